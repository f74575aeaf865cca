package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// SyncLog is the store of pairings, the sync log, controller cursors and settings
// (hub.SyncStore). Samples are written through their own group committer, so the commit of
// one sample is shared by every sample waiting at that moment and ingest is not capped at
// one fsync per message (../shared/figures.md), without queueing behind broker-state writes.
type SyncLog struct {
	db     *DB
	group  *groupCommitter
	insert *sql.Stmt
	// binding reads the device's bound_at: a repeated seq is a duplicate only within one
	// binding, and a device bound again starts its seqs afresh.
	binding *sql.Stmt
	loadRun *sql.Stmt
	changes *sql.Stmt
	// txInsert and the others are the statements bound to txOf, the committer's current
	// transaction: binding them once per batch instead of once per sample saves
	// database/sql's per-call bookkeeping. Only the committer goroutine touches them.
	txOf      *sql.Tx
	txInsert  *sql.Stmt
	txBinding *sql.Stmt
	txLoadRun *sql.Stmt
	load      loader // reads a stream's saved runs with txLoadRun
	// bindings caches devices' bound_at (0: not bound to that account) for the committer,
	// valid while binding_changes still reads bindingsOf.
	bindings   map[[2]string]int64
	bindingsOf int64
	// seen is the duplicate check (seen.go), the committer goroutine's after SyncLog returns.
	seen *seenSet
	// onCommit, when set (OnSyncCommit, before the first append), gets each new entry
	// once its commit is on disk, in cursor order, on the committer's answering goroutine.
	onCommit func(hub.SyncRecord)
	stop     chan struct{}
	saver    chan struct{} // closed when the saving loop has ended
}

// OnSyncCommit registers f to be given every entry once the commit that stored it is on disk,
// in cursor order, before the append returns (hub.SyncCommitNotifier). f runs on the
// committer's answering goroutine and must not block. Call it before the first append.
func (s *SyncLog) OnSyncCommit(f func(hub.SyncRecord)) { s.onCommit = f }

// SyncLog returns the sync store of the database. It reads the duplicate check's state
// (seen.go: the saved runs, then the log after their mark), and starts a writer goroutine
// and a saving loop that Close stops: call it once per process.
func (db *DB) SyncLog(ctx context.Context) (*SyncLog, error) {
	seen, err := loadSeen(ctx, db.reader)
	if err != nil {
		return nil, err
	}
	s := &SyncLog{db: db, seen: seen, stop: make(chan struct{}), saver: make(chan struct{}), bindings: map[[2]string]int64{}, bindingsOf: -1}
	s.load = func(k seenKey) ([]byte, error) {
		if s.txLoadRun == nil {
			s.txLoadRun = s.txOf.Stmt(s.loadRun)
		}
		return scanRuns(s.txLoadRun.QueryRow(runsArgs(k)...))
	}
	// Prepared once on the single writer connection; each batch's transaction reuses them.
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.insert, `INSERT INTO sync_log(account_id, device_id, binding, stream, seq, ts, wide, data, created_at)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.binding, `SELECT COALESCE((SELECT bound_at FROM devices WHERE id = ?2 AND account_id = ?1), 0)`},
		{&s.loadRun, seenRunsQuery},
		{&s.changes, `SELECT n FROM binding_changes WHERE id = 1`},
	} {
		if *p.st, err = db.writer.PrepareContext(ctx, p.q); err != nil {
			s.closeStmts()
			return nil, fmt.Errorf("prepare sync statements: %w", err)
		}
	}
	s.group = newGroupCommitter(db, "sync.append", 1024)
	s.group.afterTx = seen.afterTx
	// What was read from the log (after a crash: a few rounds' worth; after the upgrade to
	// 00011: all of it) is saved at once, so the rounds start from a short list and streams
	// can be dropped from memory.
	if len(seen.dirty) > 0 {
		if err := s.saveSeen(ctx, 0); err != nil {
			s.group.close()
			s.closeStmts()
			return nil, err
		}
	}
	go s.saveLoop()
	return s, nil
}

func (s *SyncLog) closeStmts() {
	for _, st := range []*sql.Stmt{s.insert, s.binding, s.loadRun, s.changes} {
		if st != nil {
			_ = st.Close()
		}
	}
}

// saveLoop saves the duplicate check's changed streams a round at a time.
func (s *SyncLog) saveLoop() {
	defer close(s.saver)
	if s.db.seenSaveEvery < 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(s.db.seenSaveEvery)
	defer t.Stop()
	// A failed round leaves the streams to the next one and loses nothing: the log still
	// holds every seq after the mark, only a start would read more of it.
	fails := failures{log: s.db.log, failed: "duplicate check not saved; retrying every round", back: "duplicate check saved again"}
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.seen.due.Load() {
			fails.note(s.saveSeen(context.Background(), seenSaveBatch))
		}
	}
}

// saveSeen saves up to limit changed streams of the duplicate check (all for limit ≤ 0) as
// a job of the samples' committer, so it shares their commits and their order.
func (s *SyncLog) saveSeen(ctx context.Context, limit int) error {
	return s.group.do(ctx, func(tx *sql.Tx) error { return s.seen.save(ctx, tx, limit) })
}

// Close saves the duplicate check and stops the committer (queued samples fail with
// ErrClosed: they were never acknowledged).
func (s *SyncLog) Close() {
	close(s.stop)
	<-s.saver
	// All of it, so the next start reads no log; if this fails it reads the log after the
	// last mark instead.
	if err := s.saveSeen(context.Background(), 0); err != nil {
		s.db.log.Warn("duplicate check not saved; the next start reads the sync log after the last save", "error", err)
	}
	s.group.close()
	s.closeStmts()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// beginTx binds the statements to the committer's new transaction and drops the cached
// bindings if any device's binding changed since they were read.
func (s *SyncLog) beginTx(tx *sql.Tx) error {
	// The binding and run reads are bound only when a transaction needs them (a device or
	// stream not in memory): most need neither.
	s.txOf, s.txInsert, s.txBinding, s.txLoadRun = tx, tx.Stmt(s.insert), nil, nil
	var n int64
	if err := tx.Stmt(s.changes).QueryRow().Scan(&n); err != nil {
		return fmt.Errorf("append sync entry: binding changes: %w", err)
	}
	if n != s.bindingsOf || len(s.bindings) > maxResidentStreams {
		clear(s.bindings)
		s.bindingsOf = n
	}
	return nil
}

// bindingOf is the device's bound_at in the account (0 when it is not bound to it), the
// binding its samples are counted in.
func (s *SyncLog) bindingOf(account, device string) (int64, error) {
	key := [2]string{account, device}
	if b, ok := s.bindings[key]; ok {
		return b, nil
	}
	var b int64
	if s.txBinding == nil {
		s.txBinding = s.txOf.Stmt(s.binding)
	}
	if err := s.txBinding.QueryRow(account, device).Scan(&b); err != nil {
		return 0, fmt.Errorf("append sync entry: binding: %w", err)
	}
	s.bindings[key] = b
	return b, nil
}

// AppendSync stores one sample, group-committed.
func (s *SyncLog) AppendSync(ctx context.Context, r hub.SyncRecord) (bool, error) {
	wait, err := s.AppendSyncAsync(ctx, r)
	if err != nil {
		return false, err
	}
	return wait(ctx)
}

// AppendSyncAsync queues the entry for the next group commit and returns a function that
// waits for it: whether it was new (false for a repeated seq) once committed. Entries are
// committed in the order they were queued.
func (s *SyncLog) AppendSyncAsync(ctx context.Context, r hub.SyncRecord) (func(context.Context) (bool, error), error) {
	stored := false
	var committed func()
	if s.onCommit != nil {
		committed = func() {
			if stored {
				s.onCommit(r)
			}
		}
	}
	wait, err := s.group.submit(ctx, func(tx *sql.Tx) error {
		if s.txOf != tx {
			if err := s.beginTx(tx); err != nil {
				return err
			}
		}
		// The batch may be retried job by job after another job failed: the last run's
		// answer is the one that committed.
		stored = false
		k := seenKey{account: r.AccountID, device: r.DeviceID, stream: r.Stream}
		var err error
		if k.binding, err = s.bindingOf(r.AccountID, r.DeviceID); err != nil {
			return err
		}
		st, err := s.seen.get(k, s.load)
		if err != nil {
			return fmt.Errorf("append sync entry: %w", err)
		}
		if !s.seen.isNew(st, r.Seq) {
			return nil
		}
		res, err := s.txInsert.Exec(r.AccountID, r.DeviceID, k.binding, r.Stream, int64(r.Seq), r.TS.UnixNano(), boolInt(r.Wide), []byte(r.Data), ms(r.CreatedAt))
		if err != nil {
			return fmt.Errorf("append sync entry: %w", err)
		}
		if r.Cursor, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("append sync entry: cursor: %w", err)
		}
		s.seen.stored(st, r.Seq, r.Cursor)
		stored = true
		return nil
	}, committed)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (bool, error) {
		if err := wait(ctx); err != nil {
			return false, err
		}
		return stored, nil
	}, nil
}

const syncCols = `cursor, account_id, device_id, stream, seq, ts, wide, data, created_at`

func scanSync(rows *sql.Rows) (hub.SyncRecord, error) {
	var r hub.SyncRecord
	var seq, ts, created int64
	var wide int
	var data []byte
	if err := rows.Scan(&r.Cursor, &r.AccountID, &r.DeviceID, &r.Stream, &seq, &ts, &wide, &data, &created); err != nil {
		return hub.SyncRecord{}, err
	}
	r.Seq, r.TS, r.Wide, r.Data, r.CreatedAt = uint64(seq), time.Unix(0, ts).UTC(), wide != 0, data, fromMS(created)
	return r, nil
}

func collectSync(rows *sql.Rows, op string) ([]hub.SyncRecord, error) {
	defer rows.Close()
	var out []hub.SyncRecord
	for rows.Next() {
		r, err := scanSync(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}

// SyncEntriesFor reads the next entries a controller may receive. Entitlement is joined with
// the pairings table at read time, so an unpairing or unbinding stops delivery of the gadget's
// entries at once, also of entries written before it.
func (s *SyncLog) SyncEntriesFor(ctx context.Context, controllerID, accountID string, after int64, limit int) ([]hub.SyncRecord, int64, error) {
	defer s.db.observed("sync.entries_for", time.Now())
	tx, err := s.db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("sync entries: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// One read transaction: the pruning mark and the entries come from the same snapshot, so
	// an entry is either returned or covered by the mark, never silently missing.
	var pruned int64
	err = tx.QueryRowContext(ctx, `SELECT through FROM sync_pruned WHERE account_id = ?`, accountID).Scan(&pruned)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("sync pruned mark: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+syncCols+` FROM sync_log
		WHERE account_id = ?1 AND cursor > ?2 AND device_id != ?3
		  AND (wide = 1 OR device_id IN (SELECT gadget_id FROM pairings WHERE controller_id = ?3))
		ORDER BY cursor LIMIT ?4`, accountID, max(after, pruned), controllerID, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("sync entries: %w", err)
	}
	out, err := collectSync(rows, "sync entries")
	return out, pruned, err
}

// SyncCursor returns the controller's durable cursor.
func (s *SyncLog) SyncCursor(ctx context.Context, controllerID string) (int64, error) {
	defer s.db.observed("sync.cursor", time.Now())
	var c int64
	err := s.db.reader.QueryRowContext(ctx, `SELECT acked FROM sync_cursors WHERE controller_id = ?`, controllerID).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sync cursor: %w", err)
	}
	return c, nil
}

// AckSync raises the durable cursor; it shares the samples' group commit, since phones
// acknowledge about as often as bands publish.
func (s *SyncLog) AckSync(ctx context.Context, controllerID, accountID string, cursor int64, at time.Time) error {
	return s.group.do(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO sync_cursors(controller_id, account_id, acked, updated_at) VALUES(?, ?, ?, ?)
			ON CONFLICT(controller_id) DO UPDATE SET acked = max(acked, excluded.acked), account_id = excluded.account_id, updated_at = excluded.updated_at`,
			controllerID, accountID, cursor, ms(at))
		return wrapf(err, "ack sync")
	})
}

// PruneSync applies retention. Entries are deleted oldest first, so "pruned through" per
// account is simply the highest cursor deleted.
func (s *SyncLog) PruneSync(ctx context.Context, olderThan time.Time, maxPerAccount, batch int) (int, error) {
	if batch <= 0 {
		batch = 10000
	}
	type victim struct {
		account string
		cursor  int64
	}
	var victims []victim
	// Age: cursors follow commit time, so walk from the oldest and stop at the first young one.
	rows, err := s.db.reader.QueryContext(ctx, `SELECT account_id, cursor, created_at FROM sync_log ORDER BY cursor LIMIT ?`, batch)
	if err != nil {
		return 0, fmt.Errorf("prune sync: %w", err)
	}
	for rows.Next() {
		var v victim
		var created int64
		if err := rows.Scan(&v.account, &v.cursor, &created); err != nil {
			rows.Close()
			return 0, fmt.Errorf("prune sync: %w", err)
		}
		if created >= ms(olderThan) {
			break
		}
		victims = append(victims, v)
	}
	rows.Close()
	// Size: per account, everything below its maxPerAccount-th newest entry.
	if maxPerAccount > 0 && len(victims) < batch {
		accs, err := s.db.reader.QueryContext(ctx, `SELECT account_id FROM sync_log GROUP BY account_id HAVING COUNT(*) > ?`, maxPerAccount)
		if err != nil {
			return 0, fmt.Errorf("prune sync: %w", err)
		}
		var over []string
		for accs.Next() {
			var a string
			if err := accs.Scan(&a); err != nil {
				accs.Close()
				return 0, fmt.Errorf("prune sync: %w", err)
			}
			over = append(over, a)
		}
		accs.Close()
		for _, a := range over {
			r, err := s.db.reader.QueryContext(ctx, `SELECT cursor FROM sync_log WHERE account_id = ?1 AND cursor <
				(SELECT cursor FROM sync_log WHERE account_id = ?1 ORDER BY cursor DESC LIMIT 1 OFFSET ?2 - 1)
				ORDER BY cursor LIMIT ?3`, a, maxPerAccount, batch-len(victims))
			if err != nil {
				return 0, fmt.Errorf("prune sync: %w", err)
			}
			for r.Next() {
				v := victim{account: a}
				if err := r.Scan(&v.cursor); err != nil {
					r.Close()
					return 0, fmt.Errorf("prune sync: %w", err)
				}
				victims = append(victims, v)
			}
			r.Close()
		}
	}
	if len(victims) == 0 {
		return 0, nil
	}
	through := map[string]int64{}
	for _, v := range victims {
		through[v.account] = max(through[v.account], v.cursor)
	}
	err = s.db.tx(ctx, "sync.prune", func(tx *sql.Tx) error {
		del, err := tx.Prepare(`DELETE FROM sync_log WHERE cursor = ?`)
		if err != nil {
			return fmt.Errorf("prune sync: %w", err)
		}
		defer del.Close()
		for _, v := range victims {
			if _, err := del.Exec(v.cursor); err != nil {
				return fmt.Errorf("prune sync: %w", err)
			}
		}
		for a, c := range through {
			// The mark covers every cursor up to c: for the size bound, older entries of the
			// account were deleted in earlier rounds or are in this one.
			if _, err := tx.Exec(`INSERT INTO sync_pruned(account_id, through) VALUES(?, ?)
				ON CONFLICT(account_id) DO UPDATE SET through = max(through, excluded.through)`, a, c); err != nil {
				return fmt.Errorf("prune sync mark: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(victims), nil
}

// Telemetry pages through a device's stored samples.
func (s *SyncLog) Telemetry(ctx context.Context, q hub.TelemetryQuery) ([]hub.SyncRecord, error) {
	defer s.db.observed("sync.telemetry", time.Now())
	where := []string{"account_id = ?", "device_id = ?", "cursor > ?"}
	args := []any{q.AccountID, q.DeviceID, q.After}
	if q.Stream != "" {
		where, args = append(where, "stream = ?"), append(args, q.Stream)
	}
	if !q.From.IsZero() {
		where, args = append(where, "ts >= ?"), append(args, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		where, args = append(where, "ts < ?"), append(args, q.To.UnixNano())
	}
	args = append(args, q.Limit)
	rows, err := s.db.reader.QueryContext(ctx, `SELECT `+syncCols+` FROM sync_log WHERE `+strings.Join(where, " AND ")+` ORDER BY cursor LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	return collectSync(rows, "telemetry")
}

var _ hub.SyncStore = (*SyncLog)(nil)
