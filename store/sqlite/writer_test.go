package sqlite

import (
	"context"
	"testing"
)

// TestEveryWriterConnectionCheckpointsLate: the writer's automatic checkpoint is only a
// backstop behind the checkpointer (checkpoint.go), and a setting of the connection, so a
// connection database/sql opens in place of one that broke must get it too, not SQLite's
// default of 1,000 pages, which would bring the checkpoints back into the commits.
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
	if n := interval(); n != writerAutoCheckpoint {
		t.Fatalf("first writer connection checkpoints every %d pages, want %d", n, writerAutoCheckpoint)
	}
	// No idle connection may be kept: the next query opens a new one, as after a bad one.
	db.writer.SetMaxIdleConns(0)
	db.writer.SetMaxIdleConns(1)
	if n := interval(); n != writerAutoCheckpoint {
		t.Fatalf("a reopened writer connection checkpoints every %d pages, want %d", n, writerAutoCheckpoint)
	}
	if s := db.writer.Stats(); s.OpenConnections != 1 {
		t.Fatalf("writer has %d connections open", s.OpenConnections)
	}
}
