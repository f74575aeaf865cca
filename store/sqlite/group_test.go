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
	db.SetObserver(func(op string, _ time.Duration) {
		if op == "test" {
			attempts.Add(1)
		}
	})
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

// TestGroupCommitHoldsJobsDuringAFlush: jobs that arrive while the last commit's flush is
// under way are not committed one by one meanwhile; they share one transaction as soon as
// the flush ends (none of them could be answered before the next flush anyway), and each
// is answered after a flush that covers it.
func TestGroupCommitHoldsJobsDuringAFlush(t *testing.T) {
	db := openTemp(t, time.Second)
	if db.wal == nil {
		t.Fatal("a store opened with the defaults flushes its WAL itself")
	}
	if _, err := db.writer.Exec(`CREATE TABLE held (n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var batches atomic.Int64
	db.SetObserver(func(op string, _ time.Duration) {
		if op == "held" {
			batches.Add(1)
		}
	})
	release := make(chan struct{})
	var flushes atomic.Int64
	real := db.wal.flushFn
	db.wal.flushFn = func() error {
		if flushes.Add(1) == 1 {
			<-release
		}
		return real()
	}
	g := newGroupCommitter(db, "held", 64)
	defer g.close()
	var releaseOnce sync.Once
	releaseFlush := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseFlush() // before the close, which waits for the held flush
	insert := func(n int) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO held(n) VALUES(?)`, n)
			return err
		}
	}
	rows := func() int {
		var n int
		if err := db.reader.QueryRow(`SELECT COUNT(*) FROM held`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var waits []func(context.Context) error
	w, err := g.submit(t.Context(), insert(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, w)
	for hang := time.Now().Add(time.Minute); flushes.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(hang) {
			t.Fatal("the first commit was never flushed")
		}
	}
	for n := 2; n <= 5; n++ {
		w, err := g.submit(t.Context(), insert(n), nil)
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
		// Time in which the committer would have committed the job on its own.
		time.Sleep(20 * time.Millisecond)
		if got := rows(); got != 1 {
			t.Fatalf("job %d committed during the flush: %d rows visible, want 1", n, got)
		}
	}
	releaseFlush()
	for i, w := range waits {
		if err := w(t.Context()); err != nil {
			t.Fatalf("job %d: %v", i+1, err)
		}
	}
	if got := rows(); got != 5 {
		t.Fatalf("%d rows after the flush, want 5", got)
	}
	if got := batches.Load(); got != 2 {
		t.Fatalf("%d transactions, want 2: the first job's and one for the four held during its flush", got)
	}
	if got := flushes.Load(); got != 2 {
		t.Fatalf("%d flushes, want 2", got)
	}
}
