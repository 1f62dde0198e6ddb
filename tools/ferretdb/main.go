// Command ferretdb runs FerretDB 1.24 (SQLite storage) as Vigil's embedded,
// MongoDB-wire-compatible database for development and tests.
//
// It wraps FerretDB's embeddable package instead of building its cmd/ferretdb:
// that command refuses to start when built from the module proxy, because its
// version file is only generated in FerretDB's own release pipeline.
//
// It also gives every collection table the primary-key index FerretDB's queries
// can use (see idindex.go), and with --wal-sync-interval fsyncs the write-ahead
// logs on a timer (see walsync.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite directory URI")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	walSync := flag.Duration("wal-sync-interval", 0, "fsync the write-ahead logs this often (for synchronous=NORMAL); 0: never")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb: bad --log-level:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
		Logger:    logger,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go keepIDIndexes(ctx, *sqliteURL, logger)
	synced := make(chan struct{})
	if *walSync > 0 {
		dir, err := sqliteDir(*sqliteURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ferretdb: bad --sqlite-url:", err)
			os.Exit(2)
		}
		go func() {
			syncWALs(ctx, dir, *walSync, logger)
			close(synced)
		}()
	} else {
		close(synced)
	}
	_ = f.Run(ctx)
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
	}
}
