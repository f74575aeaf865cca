package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"
)

// The duplicate check of samples. A repeated seq (per account, device, binding and stream)
// is stored once. That used to be the sync log's UNIQUE key, which cost one B-tree leaf per
// device in every group commit and, through the checkpoints that flushed those scattered
// pages, most of the hub's p99 at 20,000 samples/s (README, Performance). Now the store
// keeps, per stream, the runs of seqs it stored, in memory, owned by the sync committer's
// goroutine:
//
//   - A sample's job checks them inside the batch's transaction; what the batch stores is
//     noted as pending and becomes seen only once that transaction committed (afterTx), so
//     a batch that fails and is retried job by job decides afresh.
//   - Changed streams are saved in bulk into sync_seen, a few hundred per round, beside the
//     samples' commits. sync_seen_mark records a log cursor through which the saved rows are
//     complete; SyncLog adds what the log holds after it and saves that at once (a crash
//     loses no seq: replaying one already saved changes nothing).
//   - A stream not in memory is read from sync_seen when a sample needs it, so memory holds
//     the streams in use, not every stream ever seen (maxResidentStreams).
//
// Exactness: each stream keeps at most maxSeqRuns runs. A device that numbers its samples
// in the order it sends them has one run (and one more per hole it never fills). When a
// stream would have more, the oldest run and the hole above it are forgotten: seqs at or
// below the stream's floor are no longer checked, and a sample there is stored, so it may
// be stored twice but is never dropped unseen. docs/protocol.md says so.
const (
	maxSeqRuns = 256
	// seenSaveEvery and seenSaveBatch pace the saving: small rounds keep each one's share
	// of a commit short (about a millisecond).
	seenSaveEvery = 250 * time.Millisecond
	seenSaveBatch = 512
	// maxResidentStreams bounds memory: past it, streams saved and unused since the last
	// round are dropped (read back from sync_seen when used again).
	maxResidentStreams = 100_000
)

// seqRun is a run of stored seqs, lo through hi.
type seqRun struct{ lo, hi uint64 }

// seqRuns is what the store knows of one stream's seqs: every seq in runs is stored; a seq
// above floor that is in none of them is not; at or below floor it does not know.
type seqRuns struct {
	key   seenKey
	floor uint64
	runs  []seqRun // sorted, disjoint, not touching, every lo > floor
	// dirtySince is the log cursor of its first change not in sync_seen (0: saved).
	dirtySince int64
	used       uint64 // the save round it was last used in
}

// seenKey names a stream of one binding of a device.
type seenKey struct {
	account, device string
	binding         int64
	stream          string
}

// checkable reports whether the store can tell if seq was stored.
func (s *seqRuns) checkable(seq uint64) bool { return seq > s.floor }

// index is the first run that ends at or after seq-1: the one that holds seq, or the one
// seq would extend downwards, or where a new run for seq goes.
func (s *seqRuns) index(seq uint64) int {
	return sort.Search(len(s.runs), func(i int) bool { return s.runs[i].hi >= seq-1 })
}

func (s *seqRuns) has(seq uint64) bool {
	i := s.index(seq)
	return i < len(s.runs) && s.runs[i].lo <= seq && seq <= s.runs[i].hi
}

// add records seq as stored (seq must be checkable and not had).
func (s *seqRuns) add(seq uint64) {
	i := s.index(seq)
	switch {
	case i < len(s.runs) && s.runs[i].lo-1 <= seq:
		// Touches run i (lo ≥ 1, so lo-1 does not wrap).
		s.runs[i].lo, s.runs[i].hi = min(s.runs[i].lo, seq), max(s.runs[i].hi, seq)
		if i+1 < len(s.runs) && s.runs[i].hi >= s.runs[i+1].lo-1 {
			s.runs[i].hi = s.runs[i+1].hi
			s.runs = append(s.runs[:i+1], s.runs[i+2:]...)
		}
	default:
		s.runs = append(s.runs, seqRun{})
		copy(s.runs[i+1:], s.runs[i:])
		s.runs[i] = seqRun{seq, seq}
	}
	if len(s.runs) > maxSeqRuns {
		s.floor = s.runs[1].lo - 1
		s.runs = append(s.runs[:0], s.runs[1:]...)
	}
}

// encode is the sync_seen form: floor, the number of runs, then per run the distance from
// the previous run's end (or the floor) to its start, and its length less one, as uvarints.
func (s *seqRuns) encode() []byte {
	b := binary.AppendUvarint(make([]byte, 0, 4+4*len(s.runs)), s.floor)
	b = binary.AppendUvarint(b, uint64(len(s.runs)))
	prev := s.floor
	for _, r := range s.runs {
		b = binary.AppendUvarint(b, r.lo-prev)
		b = binary.AppendUvarint(b, r.hi-r.lo)
		prev = r.hi
	}
	return b
}

var errBadRuns = errors.New("malformed seq runs")

func decodeRuns(b []byte) (floor uint64, runs []seqRun, err error) {
	next := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = errBadRuns
			return 0
		}
		b = b[n:]
		return v
	}
	floor = next()
	n := next()
	if err != nil || n > maxSeqRuns || n > uint64(len(b)) {
		return 0, nil, errBadRuns
	}
	runs = make([]seqRun, 0, n)
	prev := floor
	for range n {
		gap, length := next(), next()
		if err != nil || gap < 1 || prev+gap < prev || prev+gap+length < prev+gap {
			return 0, nil, errBadRuns
		}
		r := seqRun{prev + gap, prev + gap + length}
		if len(runs) > 0 && r.lo == prev+1 {
			return 0, nil, errBadRuns // touching runs are one run
		}
		runs = append(runs, r)
		prev = r.hi
	}
	if len(b) != 0 {
		return 0, nil, errBadRuns
	}
	return floor, runs, nil
}

// pendingSeq is a seq a transaction under way stored.
type pendingSeq struct {
	st  *seqRuns
	seq uint64
}

// pendingEntry is a pendingSeq with the log cursor it was stored at.
type pendingEntry struct {
	pendingSeq
	cursor int64
}

// seenSet is the duplicate check's memory. Only the sync committer's goroutine uses it
// once SyncLog has been made.
type seenSet struct {
	streams map[seenKey]*seqRuns
	// through is the newest log cursor that committed; every entry up to it is in streams.
	through int64
	// dirty lists the streams with changes not in sync_seen, oldest change first.
	dirty []*seqRuns
	// pending is what the transaction under way stored, in order; inTx is the same as a
	// set, for repeats within the transaction.
	pending  []pendingEntry
	inTx     map[pendingSeq]struct{}
	saving   int  // how many of dirty's first streams the transaction under way saves
	saveRan  bool // whether it saves at all (a round)
	round    uint64
	resident int // maxResidentStreams (a field so a test can make it small)
	// due tells the saving loop, which runs on a goroutine of its own, that a round has
	// work (a stream to save or to drop), so that an idle store takes no transaction.
	due atomic.Bool
}

func newSeenSet() *seenSet {
	return &seenSet{streams: map[seenKey]*seqRuns{}, inTx: map[pendingSeq]struct{}{}, resident: maxResidentStreams}
}

// loader reads a stream's saved runs (nil, nil when it has none).
type loader func(k seenKey) ([]byte, error)

// get returns the stream's runs, read from sync_seen if they are not in memory.
func (s *seenSet) get(k seenKey, load loader) (*seqRuns, error) {
	st, ok := s.streams[k]
	if !ok {
		b, err := load(k)
		if err != nil {
			return nil, fmt.Errorf("seen seqs of %s/%s: %w", k.device, k.stream, err)
		}
		st = &seqRuns{key: k}
		if b != nil {
			if st.floor, st.runs, err = decodeRuns(b); err != nil {
				return nil, fmt.Errorf("seen seqs of %s/%s: %w", k.device, k.stream, err)
			}
		}
		s.streams[k] = st
	}
	st.used = s.round
	return st, nil
}

// isNew reports whether seq is to be stored: not seen, nor stored earlier in the
// transaction under way. Seqs the store cannot check are stored.
func (s *seenSet) isNew(st *seqRuns, seq uint64) bool {
	if !st.checkable(seq) {
		return true
	}
	if st.has(seq) {
		return false
	}
	_, again := s.inTx[pendingSeq{st, seq}]
	return !again
}

// stored notes that the transaction under way stored seq at cursor.
func (s *seenSet) stored(st *seqRuns, seq uint64, cursor int64) {
	p := pendingSeq{st, seq}
	s.pending = append(s.pending, pendingEntry{p, cursor})
	s.inTx[p] = struct{}{}
}

// apply records stored seqs as seen, after their transaction committed (or at open).
func (s *seenSet) apply(st *seqRuns, seq uint64, cursor int64) {
	if st.checkable(seq) && !st.has(seq) {
		st.add(seq)
		if st.dirtySince == 0 {
			st.dirtySince = cursor
			s.dirty = append(s.dirty, st)
		}
	}
	s.through = max(s.through, cursor)
}

// afterTx ends the transaction under way: what it stored and saved counts only if it
// committed.
func (s *seenSet) afterTx(committed bool) {
	if committed {
		for _, st := range s.dirty[:s.saving] {
			st.dirtySince = 0
		}
		s.dirty = append(s.dirty[:0], s.dirty[s.saving:]...)
		for _, p := range s.pending {
			s.apply(p.st, p.seq, p.cursor)
		}
		if s.saveRan {
			s.evict()
		}
	}
	s.saving, s.saveRan = 0, false
	s.pending = s.pending[:0]
	clear(s.inTx)
	s.noteDue()
}

// noteDue records whether a saving round has work.
func (s *seenSet) noteDue() { s.due.Store(len(s.dirty) > 0 || len(s.streams) > s.resident) }

// mark is the cursor through which sync_seen is complete once the first n dirty streams
// are saved.
func (s *seenSet) mark(n int) int64 {
	if n < len(s.dirty) {
		return s.dirty[n].dirtySince - 1
	}
	return s.through
}

// evict drops streams that are saved and were not used since the previous round, when
// more than resident are in memory.
func (s *seenSet) evict() {
	s.round++
	if len(s.streams) <= s.resident {
		return
	}
	for k, st := range s.streams {
		if st.dirtySince == 0 && st.used+1 < s.round {
			delete(s.streams, k)
		}
	}
}

// save writes up to limit of the oldest changed streams and the mark into tx; afterTx
// counts them saved once tx commits. limit ≤ 0 saves all.
func (s *seenSet) save(ctx context.Context, tx *sql.Tx, limit int) error {
	n := len(s.dirty)
	if limit > 0 {
		n = min(n, limit)
	}
	if n > 0 {
		up, err := tx.PrepareContext(ctx, `INSERT INTO sync_seen(account_id, device_id, binding, stream, runs) VALUES(?, ?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET runs = excluded.runs`)
		if err != nil {
			return fmt.Errorf("save seen seqs: %w", err)
		}
		defer up.Close()
		for _, st := range s.dirty[:n] {
			k := st.key
			if _, err := up.ExecContext(ctx, k.account, k.device, k.binding, k.stream, st.encode()); err != nil {
				return fmt.Errorf("save seen seqs: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO sync_seen_mark(id, through) VALUES(1, ?)
		ON CONFLICT DO UPDATE SET through = excluded.through`, s.mark(n)); err != nil {
		return fmt.Errorf("save seen mark: %w", err)
	}
	s.saving, s.saveRan = n, true
	return nil
}

// loadSeen builds the memory at open: the mark, then every log entry after it (in cursor
// order, as they committed), each stream's saved runs read as it is first met.
func loadSeen(ctx context.Context, db *sql.DB) (*seenSet, error) {
	s := newSeenSet()
	var through int64
	err := db.QueryRowContext(ctx, `SELECT through FROM sync_seen_mark WHERE id = 1`).Scan(&through)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("seen mark: %w", err)
	}
	s.through = through
	rows, err := db.QueryContext(ctx, `SELECT cursor, account_id, device_id, binding, stream, seq FROM sync_log WHERE cursor > ? ORDER BY cursor`, through)
	if err != nil {
		return nil, fmt.Errorf("seen replay: %w", err)
	}
	defer rows.Close()
	load := func(k seenKey) ([]byte, error) {
		return scanRuns(db.QueryRowContext(ctx, seenRunsQuery, runsArgs(k)...))
	}
	for rows.Next() {
		var k seenKey
		var cursor, seq int64
		if err := rows.Scan(&cursor, &k.account, &k.device, &k.binding, &k.stream, &seq); err != nil {
			return nil, fmt.Errorf("seen replay: %w", err)
		}
		st, err := s.get(k, load)
		if err != nil {
			return nil, err
		}
		s.apply(st, uint64(seq), cursor)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("seen replay: %w", err)
	}
	s.noteDue()
	return s, nil
}

// seenRunsQuery reads a stream's saved runs.
const seenRunsQuery = `SELECT runs FROM sync_seen WHERE account_id = ? AND device_id = ? AND binding = ? AND stream = ?`

func runsArgs(k seenKey) []any { return []any{k.account, k.device, k.binding, k.stream} }

// scanRuns reads the answer of seenRunsQuery: nil, nil when the stream has no saved row.
func scanRuns(row *sql.Row) ([]byte, error) {
	var b []byte
	err := row.Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}
