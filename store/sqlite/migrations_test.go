package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pressly/goose/v3"
)

// gooseOn opens path without the store, with the embedded migrations, for a test to move it
// to a version of its choosing.
func gooseOn(t *testing.T, path string) (*sql.DB, *goose.Provider) {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path+"?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, raw, sub)
	if err != nil {
		t.Fatal(err)
	}
	return raw, p
}

// migrateTo brings a new database at path only up to version, without the store, and runs
// stmts on it: the data an older hub left.
func migrateTo(t *testing.T, path string, version int64, stmts ...string) {
	t.Helper()
	raw, p := gooseOn(t, path)
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSyncBindingMigrationKeepsCursors: rebuilding sync_log for the binding column (00007)
// keeps every entry under its cursor and the AUTOINCREMENT high-water mark, so a cursor that
// retention already deleted is never handed out again (a controller holding it would skip
// the new entry).
func TestSyncBindingMigrationKeepsCursors(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "devicehub.db")
	migrateTo(t, path, 6,
		`INSERT INTO sync_log(cursor, account_id, device_id, stream, seq, ts, wide, data, created_at) VALUES(7, 'acc_a', 'dev_b', 'steps', 1, 1, 0, X'7B7D', 1)`,
		`INSERT INTO sync_log(cursor, account_id, device_id, stream, seq, ts, wide, data, created_at) VALUES(40, 'acc_a', 'dev_b', 'steps', 2, 2, 0, X'7B7D', 2)`,
		`DELETE FROM sync_log WHERE cursor = 40`, // pruned: 40 must never come back
	)
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq int64
	if err := db.reader.QueryRowContext(ctx, `SELECT seq FROM sync_log WHERE cursor = 7`).Scan(&seq); err != nil || seq != 1 {
		t.Fatalf("entry 7 after the migration: seq %d, %v", seq, err)
	}
	var cursor int64
	err = db.writer.QueryRowContext(ctx, `INSERT INTO sync_log(account_id, device_id, binding, stream, seq, ts, wide, data, created_at)
		VALUES('acc_a', 'dev_b', 0, 'steps', 3, 3, 0, X'7B7D', 3) RETURNING cursor`).Scan(&cursor)
	if err != nil {
		t.Fatal(err)
	}
	if cursor <= 40 {
		t.Fatalf("first cursor after the migration is %d: cursor 40 was already used", cursor)
	}
}

// TestSeenMigrationKeepsTheDuplicateCheck: dropping the sync log's unique key (00011) keeps
// every entry and the AUTOINCREMENT high-water mark, and the first start reads the whole log
// into the duplicate check, so a seq stored before the upgrade is still stored once.
func TestSeenMigrationKeepsTheDuplicateCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devicehub.db")
	migrateTo(t, path, 10,
		`INSERT INTO sync_log(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at) VALUES(5, 'acc', 'dev-a', 0, 'steps', 1, 1, 0, X'7B7D', 1)`,
		`INSERT INTO sync_log(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at) VALUES(6, 'acc', 'dev-a', 0, 'steps', 3, 1, 0, X'7B7D', 1)`,
		`INSERT INTO sync_log(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at) VALUES(40, 'acc', 'dev-a', 0, 'steps', 9, 1, 0, X'7B7D', 1)`,
		`DELETE FROM sync_log WHERE cursor = 40`, // pruned: 40 must never come back
	)
	db, s := openSyncLog(t, path, Options{})
	if got := appendAll(t, s, "dev-a", 1, 2, 3, 4); fmt.Sprint(got) != "[2 4]" {
		t.Fatalf("seqs 1..4 after the upgrade: stored %v, want [2 4]", got)
	}
	var first int64
	if err := db.reader.QueryRow(`SELECT MIN(cursor) FROM sync_log WHERE seq = 2`).Scan(&first); err != nil || first <= 40 {
		t.Fatalf("first cursor after the migration is %d (%v): cursor 40 was already used", first, err)
	}
	// The newest fix is one seek in the partial index, not a walk of the account's log.
	var plan string
	rows, err := db.reader.Query(`EXPLAIN QUERY PLAN `+latestLocationQuery, "acc", "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan += detail + "; "
	}
	if !strings.Contains(plan, "sync_log_location") {
		t.Fatalf("latest location plan %q does not use sync_log_location", plan)
	}
}

// TestSeenMigrationGoesBack: 00011 can be rolled back (an older hub binary on the same file):
// the unique key comes back, a seq stored twice (possible below a stream's forgotten holes)
// is kept once under its first cursor, and applying 00011 again reads the log afresh.
func TestSeenMigrationGoesBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "devicehub.db")
	migrateTo(t, path, 11,
		`INSERT INTO sync_log(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at) VALUES(5, 'acc', 'dev-a', 0, 'steps', 1, 1, 0, X'7B7D', 1)`,
		`INSERT INTO sync_log(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at) VALUES(6, 'acc', 'dev-a', 0, 'steps', 1, 1, 0, X'7B7D', 1)`,
		`INSERT INTO sync_log(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at) VALUES(7, 'acc', 'dev-a', 0, 'steps', 2, 1, 0, X'7B7D', 1)`,
		`INSERT INTO sync_seen_mark(id, through) VALUES(1, 7)`,
	)
	raw, p := gooseOn(t, path)
	if _, err := p.DownTo(ctx, 10); err != nil {
		t.Fatal(err)
	}
	var cursors string
	if err := raw.QueryRow(`SELECT group_concat(cursor) FROM (SELECT cursor FROM sync_log ORDER BY cursor)`).Scan(&cursors); err != nil || cursors != "5,7" {
		t.Fatalf("cursors after the rollback: %q, %v; want 5,7", cursors, err)
	}
	if _, err := raw.Exec(`INSERT INTO sync_log(account_id, device_id, binding, stream, seq, ts, wide, data, created_at) VALUES('acc', 'dev-a', 0, 'steps', 2, 1, 0, X'7B7D', 1)`); err == nil {
		t.Fatal("the unique key did not come back")
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	_, s := openSyncLog(t, path, Options{})
	if got := appendAll(t, s, "dev-a", 1, 2, 3); fmt.Sprint(got) != "[3]" {
		t.Fatalf("after rolling back and forth: stored %v, want [3]", got)
	}
}
