package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// openTemp opens a real database file in a temp dir.
func openTemp(t *testing.T, busy time.Duration) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"), Options{BusyTimeout: busy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// holdWriteLock takes the write lock from a second connection, as another process would.
func holdWriteLock(t *testing.T, db *DB) (release func()) {
	t.Helper()
	other, err := sql.Open("sqlite3", "file:"+db.Path()+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		other.Close()
	}
}

func TestGroupCommitIsolatesAFailingJob(t *testing.T) {
	db := openTemp(t, time.Second)
	if _, err := db.writer.Exec("CREATE TABLE g (v INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	g := newGroupCommitter(db, "test", 64)
	defer g.close()
	bad := errors.New("this job's data is bad")
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.do(context.Background(), func(tx *sql.Tx) error {
				if i == 7 {
					return bad
				}
				_, err := tx.Exec("INSERT INTO g (v) VALUES (?)", i)
				return err
			})
		}()
	}
	wg.Wait()
	var n int
	if err := db.writer.QueryRow("SELECT count(*) FROM g").Scan(&n); err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if (i == 7) != errors.Is(err, bad) || (i != 7 && err != nil) {
			t.Fatalf("job %d: %v", i, err)
		}
	}
	if n != 19 {
		t.Fatalf("%d rows committed, want the 19 good jobs", n)
	}
}

// TestGroupCommitFailsABatchOnceWhenTheDatabaseFails: when the database itself refuses (here
// locked by another process), every waiting job gets the error from one attempt of their
// batch; none is retried alone (each retry would wait out the busy timeout again), and
// nothing is written.
func TestGroupCommitFailsABatchOnceWhenTheDatabaseFails(t *testing.T) {
	// The first job waits this long for the lock: time enough for the others to queue.
	db := openTemp(t, 300*time.Millisecond)
	if _, err := db.writer.Exec("CREATE TABLE g (v INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	db.observe = func(op string, _ time.Duration) {
		if op == "test" {
			attempts.Add(1)
		}
	}
	release := holdWriteLock(t, db)
	g := newGroupCommitter(db, "test", 64)
	defer g.close()

	// Queue the jobs while the committer is busy with a first one, so they form one batch.
	first := make(chan error, 1)
	go func() {
		first <- g.do(context.Background(), func(tx *sql.Tx) error { return nil })
	}()
	const jobs = 10
	var wg sync.WaitGroup
	errs := make([]error, jobs)
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.do(context.Background(), func(tx *sql.Tx) error {
				_, err := tx.Exec("INSERT INTO g (v) VALUES (?)", i)
				return err
			})
		}()
	}
	wg.Wait()
	if err := <-first; err == nil {
		t.Fatal("first job committed while the database was locked")
	}
	for i, err := range errs {
		if !storageFailure(err) {
			t.Fatalf("job %d: %v, want the lock error", i, err)
		}
	}
	// Every attempt is one batch: with jobs retried alone there would be more attempts
	// than jobs.
	if a := attempts.Load(); a > jobs {
		t.Fatalf("%d transactions for %d jobs: jobs were retried one by one", a, jobs+1)
	}
	release()
	if err := g.do(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO g (v) VALUES (100)")
		return err
	}); err != nil {
		t.Fatalf("after the lock is gone: %v", err)
	}
}

// TestGroupCommitAnswersJobsQueuedAfterItStopped: a job handed over while the committer
// stops is either refused or answered with ErrClosed, so a caller waiting without a deadline
// (the broker's acker) is never left waiting for ever.
func TestGroupCommitAnswersJobsQueuedAfterItStopped(t *testing.T) {
	db := openTemp(t, time.Second)
	for i := range 200 {
		g := newGroupCommitter(db, "test", 64)
		if i%2 == 0 {
			go g.close() // stopping while the job is handed over
		} else {
			g.close() // stopped: the queue still has room, so the hand-over may succeed
		}
		wait, err := g.submit(context.Background(), func(*sql.Tx) error { return nil }, nil)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("submit to a stopping committer: %v", err)
			}
			continue
		}
		// Committed before the stop, or ErrClosed: either way an answer. The deadline only
		// turns a hang into a failure.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = wait(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("a job queued after the committer stopped was never answered")
		}
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("job queued while the committer stopped: %v", err)
		}
	}
}
