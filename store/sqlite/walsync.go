package sqlite

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// walSync makes committed transactions durable by flushing the WAL file to disk, outside
// SQLite's write lock.
//
// With synchronous=FULL SQLite flushes the WAL inside every COMMIT, while it holds the write
// lock, so no other transaction can run during the flush (half the time of a group commit on
// our disks, ../shared/figures.md). The writer connection therefore runs with
// synchronous=NORMAL, which writes the same frames and flushes only at checkpoints, and the
// store flushes the WAL itself after the commit, before it reports the write done: the next
// transaction already runs meanwhile, and one flush covers every commit made before it
// started. A write is acknowledged only after its flush, so what store.synchronous=FULL
// promises (an acknowledged write survives power loss) still holds; NORMAL skips the flush.
type walSync struct {
	path string // the database's -wal file

	mu   sync.Mutex // one flush at a time; a caller that waited may find itself covered
	f    *os.File
	held os.FileInfo // f's identity, to notice a WAL recreated under the same name
	// done counts finished flushes; started is the value done will take when the flush
	// under way (or the next one) ends.
	done, started uint64
	cond          *sync.Cond
	flushing      bool
	// flushFn is w.flush; a test of the sharing replaces it to count flushes.
	flushFn func() error
	// observed, when set, is told when each flush began once it ends: the disk's flush
	// is the floor under every acknowledgement's latency, and on a virtual disk its rare
	// stalls (tens of milliseconds) are the hub's slowest PUBACKs, which an operator can
	// only tell apart from the hub's own delays by seeing the flushes themselves.
	observed func(start time.Time)
}

func newWALSync(dbPath string) *walSync {
	w := &walSync{path: dbPath + "-wal"}
	w.cond = sync.NewCond(&w.mu)
	w.flushFn = w.flush
	return w
}

// sync returns once every transaction committed before the call is on disk. Concurrent
// callers share flushes: a caller waits for the flush under way (which may have started
// before its commit) and then for one that started after it.
func (w *walSync) sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A flush that starts after this point covers this caller's commit.
	need := w.done + 1
	if w.flushing {
		need = w.started + 1
	}
	for w.flushing {
		w.cond.Wait()
	}
	if w.done >= need {
		return nil
	}
	w.flushing = true
	w.started = w.done + 1
	w.mu.Unlock()
	start := time.Now()
	err := w.flushFn()
	if w.observed != nil {
		w.observed(start)
	}
	w.mu.Lock()
	w.flushing = false
	if err == nil {
		w.done = w.started
	}
	w.cond.Broadcast()
	return err
}

// flush fdatasyncs the WAL file. The file is opened once and again whenever the path no
// longer names it (SQLite deletes the WAL when the last connection closes).
func (w *walSync) flush() error {
	if w.f != nil {
		if cur, err := os.Stat(w.path); err != nil || !os.SameFile(cur, w.held) {
			w.f.Close()
			w.f = nil
		}
	}
	if w.f == nil {
		f, err := os.OpenFile(w.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open WAL to sync it: %w", err)
		}
		held, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("open WAL to sync it: %w", err)
		}
		w.f, w.held = f, held
		// The WAL may be new: its directory entry must reach the disk too.
		if err := syncDir(filepath.Dir(w.path)); err != nil {
			return err
		}
	}
	if err := datasync(w.f); err != nil {
		return fmt.Errorf("sync WAL: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open store folder to sync it: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync store folder: %w", err)
	}
	return nil
}

func (w *walSync) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}
