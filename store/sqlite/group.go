package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	// committed, when set, runs on the committer once the transaction that ran fn
	// committed, before the job's answer is sent: jobs' committed funcs run in commit order.
	committed func()
}

// groupCommitter runs every job that is waiting at the moment in one write transaction, so
// that the cost of a commit (an fsync with synchronous=FULL) is shared by all of them. It is
// the reason durable ingest is not capped near one fsync per message (see ../shared/figures.md).
type groupCommitter struct {
	db       *DB
	op       string
	jobs     chan groupJob
	maxBatch int
	stopped  chan struct{}
	quit     chan struct{}
}

func newGroupCommitter(db *DB, op string, maxBatch int) *groupCommitter {
	g := &groupCommitter{
		db:       db,
		op:       op,
		jobs:     make(chan groupJob, maxBatch),
		maxBatch: maxBatch,
		stopped:  make(chan struct{}),
		quit:     make(chan struct{}),
	}
	go g.loop()
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
// committed (may be nil) runs on the committer right after the commit, in commit order,
// before wait returns: it must be quick.
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
		case <-ctx.Done():
			// The job may still commit; the caller only learns it did not wait for the answer.
			return ctx.Err()
		}
	}, nil
}

func (g *groupCommitter) loop() {
	defer close(g.stopped)
	batch := make([]groupJob, 0, g.maxBatch)
	for {
		select {
		case j := <-g.jobs:
			batch = append(batch[:0], j)
		case <-g.quit:
			g.drain(batch[:0])
			return
		}
	fill:
		for len(batch) < g.maxBatch {
			select {
			case j := <-g.jobs:
				batch = append(batch, j)
			default:
				break fill
			}
		}
		g.run(batch)
	}
}

// drain fails whatever is still queued when the committer stops.
func (g *groupCommitter) drain(batch []groupJob) {
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
	err := g.db.tx(ctx, g.op, func(tx *sql.Tx) error {
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
	if err == nil {
		for _, j := range batch {
			if j.committed != nil {
				j.committed()
			}
		}
	}
	if err == nil || len(batch) == 1 || !jobFailed {
		for _, j := range batch {
			j.done <- err
		}
		return
	}
	// Isolate the job that failed: each gets its own transaction and its own answer.
	for _, j := range batch {
		err := g.db.tx(ctx, g.op, j.fn)
		if err == nil && j.committed != nil {
			j.committed()
		}
		j.done <- err
	}
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
}

// wrapf adds the operation name to a driver error.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
