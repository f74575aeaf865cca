package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// checkpointer copies the WAL back into the database file on a connection of its own, so
// that commits do not wait while it does.
//
// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past
// wal_autocheckpoint pages, on the writer connection: that commit, and every sample queued
// behind it, waited while thousands of pages were copied and two files flushed (at 20,000
// samples/s, 7 to 10 ms about every quarter of a second).
//
// Each round copies in two steps:
//  1. a PASSIVE checkpoint on the checkpointer's own connection copies what is committed so
//     far while the writer goes on committing (PASSIVE copies what no reader still needs
//     and never waits for a lock);
//  2. a PASSIVE checkpoint on the writer connection copies the little committed during
//     the first step. It takes the writer connection between two transactions, so the WAL
//     is wholly copied when the writer's next transaction begins, and SQLite then writes
//     the WAL over from its beginning. Only a writer that begins on a wholly copied WAL does that, which
//     step 1 alone never gives a writer that is always busy: without step 2 the WAL grew
//     without end (to 750 MB in a five-second run at 20,000 samples/s).
//
// Both connections run synchronous=NORMAL, with which SQLite flushes the WAL before it
// copies and the database file before it counts a page as copied, so no WAL frame is
// written over before its page is on disk.
type checkpointer struct {
	own    *sql.DB // the checkpointer's connection: step 1
	writer *sql.DB // the store's writer: step 2
	log    *slog.Logger
	// observe is DB.observed: each step is a store operation in the metrics.
	observe func(op string, start time.Time)
	// commits counts the writer's commits, so that an idle store is left alone.
	commits atomic.Uint64
	cancel  context.CancelFunc
	done    chan struct{}
}

const (
	// checkpointInterval is the time between rounds: at 20,000 samples/s a round copies
	// about as much as one of SQLite's automatic checkpoints at 10,000 pages did.
	checkpointInterval = 250 * time.Millisecond
	// checkpointMinFrames is how long the WAL must be before a round takes the writer for
	// step 2, so that a store that writes little is not interrupted for a few pages.
	checkpointMinFrames = 1000
	// writerAutoCheckpoint is SQLite's automatic checkpoint on the writer connection, kept
	// as a backstop should the checkpointer fail for long: four times the length the WAL
	// reaches between two rounds at 20,000 samples/s, so it does not start while rounds run.
	writerAutoCheckpoint = 40000
)

// newCheckpointer starts rounds every interval; interval <= 0 starts none (a test runs
// them itself).
func newCheckpointer(own, writer *sql.DB, log *slog.Logger, observe func(string, time.Time), interval time.Duration) *checkpointer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{own: own, writer: writer, log: log, observe: observe, cancel: cancel, done: make(chan struct{})}
	if interval <= 0 {
		close(c.done)
		return c
	}
	go c.loop(ctx, interval)
	return c
}

// committed counts a commit of the writer.
func (c *checkpointer) committed() { c.commits.Add(1) }

func (c *checkpointer) loop(ctx context.Context, interval time.Duration) {
	defer close(c.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	var seen uint64
	// Nothing is lost when a round fails: the next one copies what this one did not, and
	// the WAL is only longer meanwhile.
	fails := failures{log: c.log, failed: "store checkpoint failed; retrying every round", back: "store checkpoints work again"}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := c.commits.Load()
		if n == seen {
			continue
		}
		seen = n
		_, err := c.round(ctx)
		if err != nil && ctx.Err() != nil {
			return
		}
		fails.note(err)
	}
}

// checkpointResult is what SQLite reports of a checkpoint: the WAL's length in frames, and
// how many of them are copied into the database file.
type checkpointResult struct {
	busy           bool
	frames, copied int
}

// round runs step 1 and, for a WAL of at least checkpointMinFrames, step 2, and returns what the last
// step reported.
func (c *checkpointer) round(ctx context.Context) (checkpointResult, error) {
	r, err := c.checkpoint(ctx, c.own, "checkpoint")
	if err != nil || r.frames < checkpointMinFrames {
		return r, err
	}
	return c.checkpoint(ctx, c.writer, "checkpoint.writer")
}

func (c *checkpointer) checkpoint(ctx context.Context, conn *sql.DB, op string) (checkpointResult, error) {
	defer c.observe(op, time.Now())
	var r checkpointResult
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&r.busy, &r.frames, &r.copied); err != nil {
		return r, fmt.Errorf("%s: %w", op, err)
	}
	return r, nil
}

// close stops the rounds (one under way is cancelled) and closes the checkpointer's own
// connection. Call it before the writer closes.
func (c *checkpointer) close() error {
	c.cancel()
	<-c.done
	return c.own.Close()
}
