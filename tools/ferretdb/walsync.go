package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// With --wal-sync-interval, the databases run with synchronous=NORMAL (set in
// --sqlite-url): a commit is written to the write-ahead log but not fsynced,
// so it survives a crash of any process (the kernel holds the pages) but not a
// power loss by itself. syncWALs bounds what a power loss can take: it fsyncs
// every database's WAL each interval, as MongoDB's journal commits every
// 100 ms. What reached the disk is a prefix of the commits (the WAL is
// append-only and checksummed), so the database is never torn, only short.

// syncWALs fsyncs every *.sqlite-wal under dir each interval until ctx ends,
// and once more then.
func syncWALs(ctx context.Context, dir string, every time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	for {
		err := syncAll(dir)
		if err != nil && !failing {
			logger.Error("wal sync failed", "error", err)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			_ = syncAll(dir)
			return
		case <-tick.C:
		}
	}
}

func syncAll(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.sqlite-wal"))
	if err != nil {
		return err
	}
	var first error
	for _, name := range files {
		f, err := os.Open(name)
		if os.IsNotExist(err) {
			continue // checkpointed and removed meanwhile
		}
		if err == nil {
			err = f.Sync()
			_ = f.Close()
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
