package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// ErrClosed is returned for work handed to a store that is shutting down.
var ErrClosed = errors.New("store closed")

// groupJob is one unit of work for the group committer: fn runs inside the shared
// transaction, done receives the transaction's fate.
type groupJob struct {
	fn   func(*sql.Tx) error
	done chan error
	// committed, when set, runs once the transaction that ran fn committed and reached the
	// disk, before the job's answer is sent: jobs' committed funcs run in commit order.
	committed func()
	// err is the fate of fn's transaction, set by run for the answerer.
	err error
}

// groupCommitter runs every job that is waiting at the moment in one write transaction, so
// that the cost of a commit (an fsync with synchronous=FULL) is shared by all of them. It is
// the reason durable ingest is not capped near one fsync per message (see ../shared/figures.md).
//
// Answers are sent by a second goroutine (answer): it waits for the committed batches to
// reach the disk (DB.syncWAL, one flush for every batch committed meanwhile) while the
// committer already runs the next batch, so the flush no longer holds up the writer.
//
// While that flush is under way the committer holds what arrives instead of committing it
// at once: none of it can be answered before the next flush anyway, and one transaction for
// all of it writes each hot index page to the WAL once instead of once per small commit
// (at 20,000 samples/s a third to a half fewer commits; BenchmarkRelayVsBareMochiPaced
// reports samples per commit as hub_rows/commit).
// The batch is committed as soon as the flush ends, or earlier when it is full.
type groupCommitter struct {
	db       *DB
	op       string
	jobs     chan groupJob
	maxBatch int
	stopped  chan struct{}
	quit     chan struct{}
	// committed batches, in commit order, for answer
	toAnswer chan committedBatch
	answered chan struct{}
	// flushing is set while answer waits for a flush; flushed (capacity 1) tells the
	// committer that one ended.
	flushing atomic.Bool
	flushed  chan struct{}
	// afterTx, when set before the first job, is told on the committer's goroutine whether
	// each transaction committed, before the next one begins (the sync log's duplicate
	// check counts what a transaction stored only once it committed).
	afterTx func(committed bool)
}

// committedBatch is a batch whose transaction ended, waiting for its flush and answers.
type committedBatch struct {
	jobs  []groupJob
	start time.Time // when its transaction began: the store metric covers commit and flush
}

func newGroupCommitter(db *DB, op string, maxBatch int) *groupCommitter {
	g := &groupCommitter{
		db:       db,
		op:       op,
		jobs:     make(chan groupJob, maxBatch),
		maxBatch: maxBatch,
		stopped:  make(chan struct{}),
		quit:     make(chan struct{}),
		toAnswer: make(chan committedBatch, 64),
		answered: make(chan struct{}),
		flushed:  make(chan struct{}, 1),
	}
	go g.loop()
	go g.answer()
	return g
}

// do hands fn to the committer and waits until the transaction that ran it committed (nil)
// or failed. A job whose own fn fails does not fail the others: the batch is retried one job
// at a time to find it.
func (g *groupCommitter) do(ctx context.Context, fn func(*sql.Tx) error) error {
	wait, err := g.submit(ctx, fn, nil)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// submit queues fn and returns at once with a function that waits for its transaction's
// fate. Jobs run in the order they were submitted, so a caller that submits in arrival order
// and waits later (to pipeline one connection's messages) keeps that order in the database.
//
// committed (may be nil) runs on the answering goroutine once the commit is on disk, in
// commit order, before wait returns: it must be quick.
func (g *groupCommitter) submit(ctx context.Context, fn func(*sql.Tx) error, committed func()) (wait func(context.Context) error, err error) {
	j := groupJob{fn: fn, done: make(chan error, 1), committed: committed}
	select {
	case g.jobs <- j:
	case <-g.quit:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return func(ctx context.Context) error {
		select {
		case err := <-j.done:
			return err
		case <-g.answered:
			// Every batch the committer ran has been answered; a job still without an
			// answer slipped into the queue after the committer stopped (its select saw
			// room in the queue and the quit at once) and was never run.
			select {
			case err := <-j.done:
				return err
			default:
				return ErrClosed
			}
		case <-ctx.Done():
			// The job may still commit; the caller only learns it did not wait for the answer.
			return ctx.Err()
		}
	}, nil
}

func (g *groupCommitter) loop() {
	defer close(g.stopped)
	defer close(g.toAnswer)
	for {
		var batch []groupJob
		select {
		case j := <-g.jobs:
			batch = append(make([]groupJob, 0, 16), j)
		case <-g.quit:
			g.drain()
			return
		}
		for len(batch) < g.maxBatch {
			select {
			case j := <-g.jobs:
				batch = append(batch, j)
				continue
			default:
			}
			if !g.waitForFlush(&batch) {
				break
			}
		}
		g.run(batch)
	}
}

// waitForFlush waits, while answer's flush is under way, for the next job (appended to
// batch: true) or for the flush to end (false). With no flush under way it returns false
// at once. A stopping store does not wait here: the flush ends on its own, and answer
// reports the batch's fate.
func (g *groupCommitter) waitForFlush(batch *[]groupJob) bool {
	// A stale signal from an earlier flush must not end this wait; the flag is read after
	// it is cleared, so a flush that ends in between is seen either way.
	select {
	case <-g.flushed:
	default:
	}
	if !g.flushing.Load() {
		return false
	}
	select {
	case j := <-g.jobs:
		*batch = append(*batch, j)
		return true
	case <-g.flushed:
		return false
	}
}

// drain fails whatever is still queued when the committer stops.
func (g *groupCommitter) drain() {
	for {
		select {
		case j := <-g.jobs:
			j.done <- ErrClosed
		default:
			return
		}
	}
}

func (g *groupCommitter) run(batch []groupJob) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jobFailed := false
	done := committedBatch{jobs: batch, start: time.Now()}
	err := g.commitTx(ctx, func(tx *sql.Tx) error {
		for _, j := range batch {
			if err := j.fn(tx); err != nil {
				jobFailed = !storageFailure(err)
				return err
			}
		}
		return nil
	})
	// When the transaction itself failed (locked, I/O error, disk full), retrying each job
	// alone would fail the same way, one busy timeout after another: all get the error.
	if err == nil || len(batch) == 1 || !jobFailed {
		for i := range batch {
			batch[i].err = err
		}
		g.toAnswer <- done
		return
	}
	// Isolate the job that failed: each gets its own transaction and its own answer.
	for i := range batch {
		batch[i].err = g.commitTx(ctx, batch[i].fn)
	}
	g.toAnswer <- done
}

func (g *groupCommitter) commitTx(ctx context.Context, fn func(*sql.Tx) error) error {
	err := g.db.commitTx(ctx, g.op, fn)
	if g.afterTx != nil {
		g.afterTx(err == nil)
	}
	return err
}

// answer sends the answers of committed batches in commit order, each success only once
// the disk has it: one flush covers every batch that is waiting when it starts.
func (g *groupCommitter) answer() {
	defer close(g.answered)
	for batch := range g.toAnswer {
		batches := []committedBatch{batch}
	more:
		for {
			select {
			case b, ok := <-g.toAnswer:
				if !ok {
					break more
				}
				batches = append(batches, b)
			default:
				break more
			}
		}
		var syncErr error
		if anyCommitted(batches) {
			g.flushing.Store(true)
			syncErr = g.db.syncWAL()
			g.flushing.Store(false)
			select {
			case g.flushed <- struct{}{}:
			default:
			}
		}
		for _, b := range batches {
			g.db.observed(g.op, b.start)
			for _, j := range b.jobs {
				err := j.err
				// A failed flush leaves the rows committed (readers already see them), so
				// the commit hooks still run and keep their followers in step with the
				// database; the job itself is not reported done, so nothing is acknowledged
				// that the disk may not have, and a client's resend is a duplicate.
				if err == nil && j.committed != nil {
					j.committed()
				}
				if err == nil {
					err = syncErr
				}
				j.done <- err
			}
		}
	}
}

func anyCommitted(batches []committedBatch) bool {
	for _, b := range batches {
		for _, j := range b.jobs {
			if j.err == nil {
				return true
			}
		}
	}
	return false
}

// storageFailure reports errors of the database itself rather than of one job's data: they
// would fail any transaction, so isolating jobs cannot help.
func storageFailure(err error) bool {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrFull, sqlite3.ErrIoErr, sqlite3.ErrReadonly,
		sqlite3.ErrNomem, sqlite3.ErrCorrupt, sqlite3.ErrCantOpen:
		return true
	}
	return false
}

// close stops the committer after the batch under way; queued jobs get ErrClosed.
func (g *groupCommitter) close() {
	select {
	case <-g.quit:
	default:
		close(g.quit)
	}
	<-g.stopped
	<-g.answered
}

// wrapf adds the operation name to a driver error.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
