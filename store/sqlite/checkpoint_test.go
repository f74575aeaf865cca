package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// TestCheckpointerStartsTheWALOverWhileTheWriterNeverRests: with samples committed without
// a pause, rounds of the checkpointer copy the WAL and the WAL is written over from its
// beginning again and again, instead of growing for as long as the writer is busy (which is
// what a checkpoint beside the writer alone gives: only a writer that begins on a wholly
// copied WAL starts it over). Every sample is still there after the store is reopened.
func TestCheckpointerStartsTheWALOverWhileTheWriterNeverRests(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	// No rounds of its own: the test runs them, between commits it never stops.
	db, err := Open(ctx, path, Options{checkpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := db.SyncLog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var stored atomic.Int64
	var wg sync.WaitGroup
	const devices = 8
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				r := hub.SyncRecord{AccountID: "acc", DeviceID: fmt.Sprintf("dev-%d", d), Stream: "steps", Seq: seq,
					TS: time.Now(), Data: json.RawMessage(`{"count":1}`), CreatedAt: time.Now()}
				ok, err := s.AppendSync(ctx, r)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					stored.Add(1)
				}
			}
		}()
	}
	// Bounded: without its restarts the WAL only grows, and the loop ends at the limit.
	restarts, last, longest := 0, 0, 0
	for i := 0; i < 2000 && restarts < 5; i++ {
		time.Sleep(10 * time.Millisecond)
		r, err := db.ckpt.round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.frames < last {
			restarts++
		}
		last, longest = r.frames, max(longest, r.frames)
		// Step 1 may leave the frames of a transaction under way; step 2, run on the writer
		// between two transactions (a WAL of checkpointMinFrames or more), leaves none.
		if r.frames >= checkpointMinFrames && r.copied != r.frames {
			t.Errorf("a round with the writer's step left %d of %d frames uncopied (no reader holds them)", r.frames-r.copied, r.frames)
		}
	}
	close(stop)
	wg.Wait()
	if restarts < 5 {
		t.Fatalf("the WAL was started over %d times; it grew to %d frames", restarts, longest)
	}
	// SQLite's own checkpoint on the writer, the backstop, would start it over too, but only
	// at writerAutoCheckpoint frames, inside a commit.
	if longest >= writerAutoCheckpoint/2 {
		t.Fatalf("the WAL grew to %d frames before it was started over: the writer's backstop did it, not the rounds", longest)
	}
	t.Logf("WAL started over %d times, at most %d frames long", restarts, longest)
	s.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The WAL is truncated on close; what is left is the database file alone.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Fatalf("WAL of %d bytes left after close", fi.Size())
	}
	db, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM sync_log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != stored.Load() {
		t.Fatalf("%d samples after reopening, %d were stored", n, stored.Load())
	}
	if v, err := db.IntegrityCheck(ctx); err != nil || v != "ok" {
		t.Fatalf("integrity check: %q, %v", v, err)
	}
}

// TestCheckpointerLeavesAnIdleStoreAlone: rounds run only after commits, so a store that
// writes nothing is not checkpointed (and its writer not taken) four times a second.
func TestCheckpointerLeavesAnIdleStoreAlone(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "hub.db"), Options{checkpointEvery: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rounds atomic.Int64
	db.SetObserver(func(op string, _ time.Duration) {
		if op == "checkpoint" {
			rounds.Add(1)
		}
	})
	if err := db.tx(ctx, "test", func(tx *sql.Tx) error {
		_, err := tx.Exec("CREATE TABLE idle (v INTEGER)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rounds.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rounds.Load() != 1 {
		t.Fatalf("%d rounds after one commit, want 1", rounds.Load())
	}
	time.Sleep(100 * time.Millisecond) // twenty intervals without a commit
	if n := rounds.Load(); n != 1 {
		t.Fatalf("%d rounds after one commit and twenty idle intervals, want 1", n)
	}
}

// TestCheckpointerSaysOnceWhenItFails: rounds that keep failing are logged once, not four
// times a second, and the recovery once. Its connection here opens a file in a folder that
// does not exist yet, until the test makes it.
func TestCheckpointerSaysOnceWhenItFails(t *testing.T) {
	var log logLines
	dir := filepath.Join(t.TempDir(), "later")
	own, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	writer := openTemp(t, time.Second).writer
	c := newCheckpointer(own, writer, slog.New(slog.NewTextHandler(&log, nil)), func(string, time.Time) {}, 2*time.Millisecond)
	defer c.close()
	const failed, recovered = "store checkpoint failed; retrying every round", "store checkpoints work again"
	// Rounds run only after commits: count one before each look.
	waitFor := func(what string) {
		t.Helper()
		for range 5000 { // bounded: a round every 2 ms, up to 25 s on a slow machine
			c.committed()
			if log.count(what) > 0 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%q never logged", what)
	}
	waitFor(failed)
	for range 10 { // more failing rounds
		c.committed()
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	waitFor(recovered)
	if n := log.count(failed); n != 1 {
		t.Fatalf("the failing rounds were logged %d times, want once", n)
	}
}
