package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// TestWALSyncEveryCallerWaitsForAFlushThatStartedAfterIt: a caller of sync returns only
// after a flush that began after the call (so it covers a commit made before the call), and
// callers that arrive during a flush share the next one instead of flushing one by one.
func TestWALSyncEveryCallerWaitsForAFlushThatStartedAfterIt(t *testing.T) {
	w := newWALSync(filepath.Join(t.TempDir(), "x.db"))
	var started atomic.Int64 // flushes begun
	release := make(chan struct{})
	w.flushFn = func() error {
		started.Add(1)
		<-release
		return nil
	}
	var first sync.WaitGroup
	first.Add(1)
	go func() { defer first.Done(); _ = w.sync() }()
	for started.Load() != 1 { // the first flush is under way
		time.Sleep(time.Millisecond)
	}
	// Ten callers arrive while it runs: it may have begun before their commits.
	const callers = 10
	returned := make(chan int64, callers)
	for range callers {
		go func() {
			if err := w.sync(); err != nil {
				t.Error(err)
			}
			returned <- started.Load()
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them queue up (a slower machine only queues fewer)
	select {
	case n := <-returned:
		t.Fatalf("a caller returned after %d flush(es) while the flush under way, which began before its call, had not ended", n)
	default:
	}
	close(release) // every flush from now on ends at once
	first.Wait()
	for range callers {
		if n := <-returned; n < 2 {
			t.Fatalf("a caller that arrived during the first flush returned after only %d flush(es)", n)
		}
	}
	if n := started.Load(); n > 1+callers {
		t.Fatalf("%d flushes for %d callers", n, 1+callers)
	}
	t.Logf("%d callers that arrived during one flush needed %d more", callers, started.Load()-1)
}

// TestWALSyncFailureIsReported: a failed flush is the caller's error, and the next caller
// flushes again rather than counting the failed one as done.
func TestWALSyncFailureIsReported(t *testing.T) {
	w := newWALSync(filepath.Join(t.TempDir(), "x.db"))
	bad := errors.New("disk said no")
	fail := true
	flushes := 0
	w.flushFn = func() error {
		flushes++
		if fail {
			return bad
		}
		return nil
	}
	if err := w.sync(); !errors.Is(err, bad) {
		t.Fatalf("sync with a failing flush: %v, want %v", err, bad)
	}
	fail = false
	if err := w.sync(); err != nil || flushes != 2 {
		t.Fatalf("sync after the failure: %v after %d flushes, want nil after 2", err, flushes)
	}
}

// TestFullStoreFlushesTheWAL: with store.synchronous FULL the real flush runs on the
// database's WAL file after a commit and succeeds; NORMAL has no flusher at all.
func TestFullStoreFlushesTheWAL(t *testing.T) {
	db := openTemp(t, time.Second)
	if db.wal == nil {
		t.Fatal("a FULL store has no WAL flusher")
	}
	if _, err := db.writer.Exec("CREATE TABLE f (v)"); err != nil {
		t.Fatal(err)
	}
	if err := db.syncWAL(); err != nil {
		t.Fatalf("flush the WAL: %v", err)
	}
	if db.wal.f == nil || db.wal.f.Name() != db.Path()+"-wal" {
		t.Fatalf("flushed %v, want the database's WAL %s", db.wal.f, db.Path()+"-wal")
	}
	normal, err := Open(t.Context(), filepath.Join(t.TempDir(), "n.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer normal.Close()
	if normal.wal != nil {
		t.Fatal("a NORMAL store flushes the WAL after commits")
	}
}

// TestWALFlushesAreTimed: each flush of the WAL is reported as the store operation
// "wal.flush" with how long the disk took (held here for a known time), so /metrics shows
// the disk's share of an acknowledgement's latency; a NORMAL store, which does not flush
// after commits, reports none.
func TestWALFlushesAreTimed(t *testing.T) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		t.Run(mode, func(t *testing.T) {
			db, err := Open(t.Context(), filepath.Join(t.TempDir(), "f.db"), Options{Synchronous: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var mu sync.Mutex
			var flushes []time.Duration
			db.SetObserver(func(op string, d time.Duration) {
				if op == opWALFlush {
					mu.Lock()
					flushes = append(flushes, d)
					mu.Unlock()
				}
			})
			const held = 30 * time.Millisecond
			if db.wal != nil {
				real := db.wal.flushFn
				db.wal.flushFn = func() error { time.Sleep(held); return real() }
			}
			if err := db.tx(t.Context(), "test.write", func(tx *sql.Tx) error {
				_, err := tx.Exec(`CREATE TABLE timed (n INTEGER)`)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if mode == "NORMAL" {
				if len(flushes) != 0 {
					t.Fatalf("a NORMAL store reported flushes %v", flushes)
				}
				return
			}
			if len(flushes) != 1 || flushes[0] < held {
				t.Fatalf("flushes %v, want one of at least %v", flushes, held)
			}
		})
	}
}

// TestSampleAnsweredOnlyAfterTheFlush: a group-committed sample is committed (a reader sees
// it) but neither reported stored nor handed to the commit hook (the relay's live feed)
// until the WAL flush that covers it has ended, so nothing is acknowledged that a power
// loss could take back.
func TestSampleAnsweredOnlyAfterTheFlush(t *testing.T) {
	db := openTemp(t, time.Second)
	s, err := db.SyncLog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var hooked atomic.Int64
	s.OnSyncCommit(func(hub.SyncRecord) { hooked.Add(1) })
	release := make(chan struct{})
	real := db.wal.flushFn
	db.wal.flushFn = func() error { <-release; return real() }

	now := time.Now()
	wait, err := s.AppendSyncAsync(t.Context(), hub.SyncRecord{AccountID: "acc_a", DeviceID: "dev_b", Stream: "steps", Seq: 1, TS: now, Data: []byte(`{"count":1}`), CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for hang := time.Now().Add(time.Minute); n == 0; { // the commit itself is not held back
		if time.Now().After(hang) {
			t.Fatal("the sample was never committed")
		}
		if err := db.reader.QueryRow(`SELECT COUNT(*) FROM sync_log`).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if stored, err := wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("answer before the flush ended: stored %v, %v", stored, err)
	}
	if hooked.Load() != 0 {
		t.Fatal("the commit hook ran before the flush ended")
	}
	close(release)
	if stored, err := wait(t.Context()); err != nil || !stored {
		t.Fatalf("after the flush: stored %v, %v", stored, err)
	}
	if hooked.Load() != 1 {
		t.Fatalf("commit hook ran %d times, want 1", hooked.Load())
	}
}

// TestWALSyncFollowsARecreatedWAL: when the WAL under the database's name is a new file (SQLite
// deletes it when the last connection closes and makes a new one on the next), the flush
// syncs the new file, not the one it opened before.
func TestWALSyncFollowsARecreatedWAL(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	w := newWALSync(db)
	defer w.close()
	if err := os.WriteFile(db+"-wal", []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	first := w.f
	if err := os.Remove(db + "-wal"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+"-wal", []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	cur, _ := os.Stat(db + "-wal")
	held, _ := w.f.Stat()
	if w.f == first || !os.SameFile(cur, held) {
		t.Fatal("the flush still syncs the deleted WAL file")
	}
}
