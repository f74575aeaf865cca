// Package sqlite is devicehub's store on SQLite (github.com/mattn/go-sqlite3): the connection
// pools, the pragmas, the embedded schema migrations (applied at open by pressly/goose) and
// the implementations of the storage interfaces the hub domain and the broker declare.
//
// One writer connection serialises every write (SQLite allows one writer at a time anyway, and
// one connection avoids SQLITE_BUSY storms between our own goroutines); a pool of read-only
// connections serves reads concurrently thanks to WAL.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tunes how the database is opened.
type Options struct {
	// Synchronous is the durability: "FULL" (default: a write is reported done only once the
	// WAL is flushed to disk, so it survives power loss; walsync.go) or "NORMAL" (a commit
	// survives a process crash, the last commits may be lost on power loss). See README's
	// configuration table.
	Synchronous string
	// BusyTimeout is how long a connection waits for a lock before it fails with SQLITE_BUSY.
	BusyTimeout time.Duration
	// Readers is the size of the read-only pool; 0 means one per CPU, at least 2.
	Readers int
	// Logger receives migration progress; nil discards it.
	Logger *slog.Logger
	// checkpointEvery is the time between the checkpointer's rounds: 0 is
	// checkpointInterval, a negative value starts none (a test runs them itself).
	checkpointEvery time.Duration
	// seenSaveEvery is the time between saves of the sync log's duplicate check (seen.go):
	// 0 is seenSaveEvery, a negative value saves only on Close (a test saves itself).
	seenSaveEvery time.Duration
}

// DB is an open devicehub database.
type DB struct {
	path   string
	writer *sql.DB
	reader *sql.DB
	log    *slog.Logger
	// observe, when set, is told how long each store operation took (for /metrics). It is
	// atomic because the checkpointer's goroutine, started by Open, reports to it too.
	observe atomic.Pointer[func(op string, d time.Duration)]
	// small group-commits small independent writes (device presence, audit entries), so a
	// reconnect storm of thousands of devices costs a few commits, not one fsync each.
	small *groupCommitter
	// wal flushes the WAL after commits when store.synchronous is FULL; nil for NORMAL.
	wal *walSync
	// ckpt copies the WAL into the database file beside the writer (checkpoint.go).
	ckpt *checkpointer
	// seenSaveEvery paces SyncLog's saving loop (Options.seenSaveEvery).
	seenSaveEvery time.Duration
}

// Open creates the folder and the database file if needed, applies the pragmas, and runs the
// embedded migrations. The returned DB is ready for use.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store path is empty")
	}
	if opts.Synchronous == "" {
		opts.Synchronous = "FULL"
	}
	sync := strings.ToUpper(opts.Synchronous)
	if sync != "FULL" && sync != "NORMAL" {
		return nil, fmt.Errorf("store synchronous %q: must be FULL or NORMAL", opts.Synchronous)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.Readers <= 0 {
		opts.Readers = max(2, runtime.NumCPU())
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create store folder: %w", err)
		}
	}
	params := url.Values{}
	params.Set("_journal_mode", "WAL")
	params.Set("_foreign_keys", "on")
	params.Set("_busy_timeout", fmt.Sprint(opts.BusyTimeout.Milliseconds()))
	// FULL is kept by flushing the WAL after each commit, outside the write lock (walsync.go),
	// so the connection itself runs NORMAL either way.
	params.Set("_synchronous", "NORMAL")
	// _txlock=immediate takes the write lock at BEGIN, so a transaction never fails half-way
	// through because a reader upgraded first.
	params.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + params.Encode()

	// The WAL is copied into the database file by the checkpointer (checkpoint.go), beside
	// the writer, not inside one of its commits. SQLite's own automatic checkpoint stays as a
	// backstop at writerAutoCheckpoint pages. It is a setting of the connection, not of the
	// file, so it is applied to every writer connection as it opens (database/sql replaces
	// one that broke), not once.
	writer := sql.OpenDB(connector{dsn: dsn, driver: &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", writerAutoCheckpoint), nil)
		return err
	}}})
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	rparams := url.Values{}
	rparams.Set("_foreign_keys", "on")
	rparams.Set("_busy_timeout", fmt.Sprint(opts.BusyTimeout.Milliseconds()))
	rparams.Set("mode", "ro")
	reader, err := sql.Open("sqlite3", "file:"+path+"?"+rparams.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open store readers %s: %w", path, err)
	}
	reader.SetMaxOpenConns(opts.Readers)
	reader.SetMaxIdleConns(opts.Readers)

	db := &DB{path: path, writer: writer, reader: reader, log: log, seenSaveEvery: opts.seenSaveEvery}
	if db.seenSaveEvery == 0 {
		db.seenSaveEvery = seenSaveEvery
	}
	if sync == "FULL" {
		db.wal = newWALSync(path)
		db.wal.observed = func(start time.Time) { db.observed(opWALFlush, start) }
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	// The checkpointer's connection writes to the database file, so it is not one of the
	// read-only readers; synchronous=NORMAL makes its checkpoints flush (checkpoint.go).
	cparams := url.Values{}
	cparams.Set("_busy_timeout", fmt.Sprint(opts.BusyTimeout.Milliseconds()))
	cparams.Set("_synchronous", "NORMAL")
	own, err := sql.Open("sqlite3", "file:"+path+"?"+cparams.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store checkpointer %s: %w", path, err)
	}
	own.SetMaxOpenConns(1)
	own.SetMaxIdleConns(1)
	own.SetConnMaxLifetime(0)
	every := opts.checkpointEvery
	if every == 0 {
		every = checkpointInterval
	}
	db.ckpt = newCheckpointer(own, writer, log, db.observed, every)
	db.small = newGroupCommitter(db, "small_writes", 1024)
	return db, nil
}

func (db *DB) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectSQLite3, db.writer, sub,
		goose.WithLogger(gooseLogger{db.log}))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		db.log.Info("store migration applied", "version", r.Source.Version, "file", filepath.Base(r.Source.Path), "took", r.Duration)
	}
	return nil
}

// SetObserver installs a callback that is told the duration of each store operation; the
// operations that end after the call report to it.
func (db *DB) SetObserver(fn func(op string, d time.Duration)) { db.observe.Store(&fn) }

func (db *DB) observed(op string, start time.Time) {
	if fn := db.observe.Load(); fn != nil && *fn != nil {
		(*fn)(op, time.Since(start))
	}
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Ping checks that both pools answer.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.writer.PingContext(ctx); err != nil {
		return err
	}
	return db.reader.PingContext(ctx)
}

// IntegrityCheck runs PRAGMA integrity_check and returns its verdict ("ok" when healthy).
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	var res string
	if err := db.reader.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return "", fmt.Errorf("integrity check: %w", err)
	}
	return res, nil
}

// Close checkpoints the WAL into the main file and closes every connection.
func (db *DB) Close() error {
	var errs []error
	if db.small != nil {
		db.small.close()
	}
	// Before the writer closes: a round's second step runs on it.
	if db.ckpt != nil {
		errs = append(errs, db.ckpt.close())
	}
	if db.reader != nil {
		errs = append(errs, db.reader.Close())
	}
	if db.writer != nil {
		// A checkpoint on close leaves a database file that other tools open without the WAL.
		if _, err := db.writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint: %w", err))
		}
		errs = append(errs, db.writer.Close())
	}
	if db.wal != nil {
		db.wal.close()
	}
	return errors.Join(errs...)
}

// opWALFlush is the store operation that times each flush of the WAL (store.synchronous
// FULL): one flush answers every commit made before it began.
const opWALFlush = "wal.flush"

// syncWAL returns once every transaction committed so far is on disk (store.synchronous
// FULL); with NORMAL it returns at once.
func (db *DB) syncWAL() error {
	if db.wal == nil {
		return nil
	}
	return db.wal.sync()
}

// tx runs fn in one write transaction and commits it, or rolls back when fn fails.
func (db *DB) tx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	defer db.observed(op, time.Now())
	if err := db.commitTx(ctx, op, fn); err != nil {
		return err
	}
	if err := db.syncWAL(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// commitTx is tx without waiting for the commit to reach the disk: the group committer
// flushes for a whole batch on its own goroutine while the next batch runs.
func (db *DB) commitTx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", op, err)
	}
	if db.ckpt != nil {
		db.ckpt.committed()
	}
	return nil
}

// failures logs a run of failed rounds of a background loop once, and the first round that
// works after it once, instead of a line for every round.
type failures struct {
	log          *slog.Logger
	failed, back string
	failing      bool
}

func (f *failures) note(err error) {
	switch {
	case err != nil && !f.failing:
		f.log.Warn(f.failed, "error", err)
		f.failing = true
	case err == nil && f.failing:
		f.log.Info(f.back)
		f.failing = false
	}
}

// connector opens connections of one driver with one DSN: sql.OpenDB with it gives the
// writer pool its own driver (with its connect hook) without registering a driver name,
// which is process-wide state.
type connector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.driver }

type gooseLogger struct{ log *slog.Logger }

func (g gooseLogger) Printf(format string, v ...any) {
	g.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (g gooseLogger) Fatalf(format string, v ...any) {
	g.log.Error(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
