package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"
)

// TestSyncBindingMigrationKeepsCursors: rebuilding sync_log for the binding column (00007)
// keeps every entry under its cursor and the AUTOINCREMENT high-water mark, so a cursor that
// retention already deleted is never handed out again (a controller holding it would skip
// the new entry).
func TestSyncBindingMigrationKeepsCursors(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "devicehub.db")
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
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO sync_log(cursor, account_id, device_id, stream, seq, ts, wide, data, created_at) VALUES(7, 'acc_a', 'dev_b', 'steps', 1, 1, 0, X'7B7D', 1)`,
		`INSERT INTO sync_log(cursor, account_id, device_id, stream, seq, ts, wide, data, created_at) VALUES(40, 'acc_a', 'dev_b', 'steps', 2, 2, 0, X'7B7D', 2)`,
		`DELETE FROM sync_log WHERE cursor = 40`, // pruned: 40 must never come back
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
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
