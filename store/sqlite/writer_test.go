package sqlite

import (
	"context"
	"testing"
)

// TestEveryWriterConnectionCheckpointsLate: the writer's checkpoint interval is a setting of
// the connection, so a connection database/sql opens in place of one that broke must get it
// too, not SQLite's default of 1,000 pages.
func TestEveryWriterConnectionCheckpointsLate(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t, 0)
	interval := func() int {
		t.Helper()
		var n int
		if err := db.writer.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := interval(); n != 10000 {
		t.Fatalf("first writer connection checkpoints every %d pages, want 10000", n)
	}
	// No idle connection may be kept: the next query opens a new one, as after a bad one.
	db.writer.SetMaxIdleConns(0)
	db.writer.SetMaxIdleConns(1)
	if n := interval(); n != 10000 {
		t.Fatalf("a reopened writer connection checkpoints every %d pages, want 10000", n)
	}
	if s := db.writer.Stats(); s.OpenConnections != 1 {
		t.Fatalf("writer has %d connections open", s.OpenConnections)
	}
}
