package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses
)

// FerretDB 1.24 answers a filter of exactly {_id: value} with
//
//	SELECT ... WHERE _ferretdb_sjson->'$._id' = ?
//
// but indexes _id with the expression _ferretdb_sjson->"_id", which SQLite does
// not consider the same, so every lookup by _id scans the whole table. We add,
// to every collection table, an index on the exact expression the query uses.
// Indexes are schema only: SQLite maintains them, FerretDB's data and metadata
// are untouched, and dropping a collection drops its table with the index.

const idIndexSuffix = "__vigil_id"

// sqliteDir returns the directory of a FerretDB --sqlite-url such as file:data/.
func sqliteDir(sqliteURL string) (string, error) {
	u, err := url.Parse(sqliteURL)
	if err != nil {
		return "", err
	}
	p := u.Opaque
	if p == "" {
		p = u.Path
	}
	return filepath.Clean(p), nil
}

// keepIDIndexes adds the index to new tables every few seconds until ctx ends.
func keepIDIndexes(ctx context.Context, sqliteURL string, logger *slog.Logger) {
	dir, err := sqliteDir(sqliteURL)
	if err != nil {
		logger.Warn("id index: cannot read --sqlite-url", "error", err)
		return
	}
	dbs := map[string]*sql.DB{}
	defer func() {
		for _, db := range dbs {
			_ = db.Close()
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, f := range files {
			db, ok := dbs[f]
			if !ok {
				db, err = sql.Open("sqlite", "file:"+f+"?_pragma=busy_timeout(10000)")
				if err != nil {
					continue
				}
				db.SetMaxOpenConns(1)
				dbs[f] = db
			}
			if err := ensureIDIndexes(ctx, db); err != nil && ctx.Err() == nil {
				logger.Debug("id index: not yet", "file", f, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func ensureIDIndexes(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		return err // the database has no collection yet
	}
	var tables []string
	for rows.Next() {
		var t string
		if rows.Scan(&t) == nil {
			tables = append(tables, t)
		}
	}
	_ = rows.Close()
	for _, t := range tables {
		name := t + idIndexSuffix
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`, name).Scan(&n); err != nil || n > 0 {
			continue
		}
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (_ferretdb_sjson->'$._id')`, quote(name), quote(t))
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			return err
		}
	}
	return nil
}

func quote(ident string) string {
	return `"` + strings.ReplaceAll(ident, `"`, `""`) + `"`
}
