package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// TestSeqRunsKnowEverySeqStored: against a plain set, in random order with many repeats,
// the runs say "stored" for exactly the seqs added, stay sorted and apart, and come back the
// same from their saved form.
func TestSeqRunsKnowEverySeqStored(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		st := &seqRuns{}
		want := map[uint64]bool{}
		span := uint64(2 + rng.IntN(400))
		for range rng.IntN(600) {
			seq := 1 + rng.Uint64N(span)
			if st.has(seq) != want[seq] {
				t.Fatalf("round %d: has(%d) = %v before adding, want %v (runs %v)", round, seq, st.has(seq), want[seq], st.runs)
			}
			if !want[seq] {
				st.add(seq)
				want[seq] = true
			}
		}
		if st.floor != 0 {
			t.Fatalf("round %d: floor %d with at most %d runs possible", round, st.floor, span/2+1)
		}
		for seq := uint64(1); seq <= span+1; seq++ {
			if st.has(seq) != want[seq] {
				t.Fatalf("round %d: has(%d) = %v, want %v (runs %v)", round, seq, st.has(seq), want[seq], st.runs)
			}
		}
		for i := 1; i < len(st.runs); i++ {
			if st.runs[i-1].hi+1 >= st.runs[i].lo {
				t.Fatalf("round %d: runs %v and %v touch or overlap", round, st.runs[i-1], st.runs[i])
			}
		}
		floor, runs, err := decodeRuns(st.encode())
		if err != nil || floor != st.floor || fmt.Sprint(runs) != fmt.Sprint(st.runs) {
			t.Fatalf("round %d: decoded %d %v, %v; want %d %v", round, floor, runs, err, st.floor, st.runs)
		}
	}
}

// TestSeqRunsForgetTheOldestHoles: a stream with more holes than maxSeqRuns keeps the newest
// runs exact; below its floor a seq is no longer checked (so it is stored rather than
// dropped unseen).
func TestSeqRunsForgetTheOldestHoles(t *testing.T) {
	st := &seqRuns{}
	const n = maxSeqRuns + 10
	for i := uint64(1); i <= n; i++ {
		st.add(2 * i) // 2, 4, 6, …: a hole below each
	}
	if len(st.runs) != maxSeqRuns {
		t.Fatalf("%d runs, want %d", len(st.runs), maxSeqRuns)
	}
	// The oldest ten runs (2..20) and their holes are forgotten.
	if st.floor != 21 {
		t.Fatalf("floor %d, want 21", st.floor)
	}
	if st.checkable(20) || st.checkable(3) || !st.checkable(22) {
		t.Fatal("seqs at or below the floor must be unchecked, those above checked")
	}
	if !st.has(22) || st.has(23) || !st.has(2*n) {
		t.Fatalf("above the floor the runs must be exact: %v", st.runs[:3])
	}
	s := newSeenSet()
	if !s.isNew(st, 4) {
		t.Fatal("a seq below the floor must be stored, not dropped as a duplicate")
	}
	if s.isNew(st, 2*n) {
		t.Fatal("a seq above the floor that was stored must be a duplicate")
	}
}

func TestDecodeRunsRefusesMalformedRows(t *testing.T) {
	for _, b := range [][]byte{
		{},                 // nothing
		{0},                // no count
		{0, 1, 0, 0},       // a run starting at the floor
		{0, 2, 1, 0, 1, 0}, // two runs touching
		{0, 1, 1, 0, 9},    // trailing bytes
	} {
		if _, _, err := decodeRuns(b); err == nil {
			t.Errorf("decodeRuns(%v) accepted", b)
		}
	}
}

// openSyncLog opens the store at path and its sync log, both closed when the test ends
// (the sync log first, as the app does).
func openSyncLog(t *testing.T, path string, opts Options) (*DB, *SyncLog) {
	t.Helper()
	db, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := db.SyncLog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return db, s
}

func sample(dev string, seq uint64) hub.SyncRecord {
	return hub.SyncRecord{AccountID: "acc", DeviceID: dev, Stream: "steps", Seq: seq,
		TS: time.Unix(1_700_000_000, 0), Data: json.RawMessage(`{"count":1}`), CreatedAt: time.Unix(1_700_000_000, 0)}
}

func appendAll(t *testing.T, s *SyncLog, dev string, seqs ...uint64) (stored []uint64) {
	t.Helper()
	for _, seq := range seqs {
		ok, err := s.AppendSync(context.Background(), sample(dev, seq))
		if err != nil {
			t.Fatalf("%s seq %d: %v", dev, seq, err)
		}
		if ok {
			stored = append(stored, seq)
		}
	}
	return stored
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func countLog(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.reader.QueryRow(`SELECT COUNT(*) FROM sync_log`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// markAndEnd is the duplicate check's saved mark and the log's newest cursor.
func markAndEnd(t *testing.T, db *DB) (mark, last int64) {
	t.Helper()
	// No row yet: nothing saved.
	if err := db.reader.QueryRow(`SELECT through FROM sync_seen_mark`).Scan(&mark); err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("seen mark: %v", err)
	}
	if err := db.reader.QueryRow(`SELECT MAX(cursor) FROM sync_log`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	return mark, last
}

// openCrashImage opens a copy of the files of the store at path as a crash would leave them
// (the database file and its WAL, no shared memory). The store must run without checkpoints,
// so that the database file does not change while it is copied.
func openCrashImage(t *testing.T, path string) *DB {
	t.Helper()
	crash := filepath.Join(t.TempDir(), "hub.db")
	copyFile(t, path, crash)
	copyFile(t, path+"-wal", crash+"-wal")
	db, err := Open(context.Background(), crash, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDuplicateCheckSurvivesACrash: the files of a running store, taken as a crash would
// leave them (part of the duplicate check saved, the newest part only in the log), open to
// a store that still stores every seq once: what was saved is read back, what was not is
// found in the log after the mark.
func TestDuplicateCheckSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "hub.db")
	// No checkpoints: the database file stays as it was at open, the WAL holds every commit.
	// No saving loop: the test saves when it means to.
	_, s := openSyncLog(t, path, Options{checkpointEvery: -1, seenSaveEvery: -1})
	if got := appendAll(t, s, "dev-a", seqRange(1, 30)...); len(got) != 30 {
		t.Fatalf("stored %d of 30 new seqs", len(got))
	}
	appendAll(t, s, "dev-b", 5, 7, 9)
	if err := s.saveSeen(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := appendAll(t, s, "dev-a", seqRange(25, 60)...); fmt.Sprint(got) != fmt.Sprint(seqRange(31, 60)) {
		t.Fatalf("after a save: stored %v, want 31..60", got)
	}
	appendAll(t, s, "dev-b", 6, 20)
	db2 := openCrashImage(t, path)
	mark, last := markAndEnd(t, db2)
	if mark >= last {
		t.Fatalf("the crash image's mark %d covers the whole log (%d): the test would not read the log", mark, last)
	}
	s2, err := db2.SyncLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	before := countLog(t, db2)
	if got := appendAll(t, s2, "dev-a", seqRange(1, 61)...); fmt.Sprint(got) != "[61]" {
		t.Fatalf("dev-a resent 1..61 after the crash: stored %v, want only [61]", got)
	}
	if got := appendAll(t, s2, "dev-b", seqRange(1, 21)...); fmt.Sprint(got) != "[1 2 3 4 8 10 11 12 13 14 15 16 17 18 19 21]" {
		t.Fatalf("dev-b resent 1..21 after the crash: stored %v, want the holes of 5 6 7 9 20", got)
	}
	if n := countLog(t, db2); n != before+17 {
		t.Fatalf("log has %d entries, want %d", n, before+17)
	}
}

// TestDuplicateCheckAfterACleanRestart: Close saves everything, so the next start reads none
// of the log and still knows every seq.
func TestDuplicateCheckAfterACleanRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := db.SyncLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, "dev-a", seqRange(1, 100)...)
	s.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mark, last := markAndEnd(t, db)
	if mark != last {
		t.Fatalf("after Close the mark is %d, the log ends at %d", mark, last)
	}
	s, err = db.SyncLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := appendAll(t, s, "dev-a", seqRange(90, 101)...); fmt.Sprint(got) != "[101]" {
		t.Fatalf("resent 90..101 after a restart: stored %v, want [101]", got)
	}
}

// TestDuplicateCheckReadsEvictedStreamsBack: with room for one stream in memory, streams
// saved and unused are dropped and read back from sync_seen when used again, exactly.
func TestDuplicateCheckReadsEvictedStreamsBack(t *testing.T) {
	ctx := context.Background()
	_, s := openSyncLog(t, filepath.Join(t.TempDir(), "hub.db"), Options{})
	resident := func() (n int) {
		_ = s.group.do(ctx, func(*sql.Tx) error { n = len(s.seen.streams); return nil })
		return n
	}
	_ = s.group.do(ctx, func(*sql.Tx) error { s.seen.resident = 1; return nil })
	for d := range 5 {
		appendAll(t, s, fmt.Sprint("dev-", d), 1, 2, 3, 10)
	}
	for range 3 { // saved, then unused for a round: dropped
		if err := s.saveSeen(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := resident(); n > 1 {
		t.Fatalf("%d streams in memory with room for 1", n)
	}
	for d := range 5 {
		if got := appendAll(t, s, fmt.Sprint("dev-", d), seqRange(1, 11)...); fmt.Sprint(got) != "[4 5 6 7 8 9 11]" {
			t.Fatalf("dev-%d after its stream was dropped: stored %v, want [4 5 6 7 8 9 11]", d, got)
		}
	}
}

// TestSampleOfAFailedBatchIsStoredWhenRetried: when another job fails the batch a sample was
// in, the batch is retried job by job; the sample stored by the failed transaction must not
// count as seen, or its retry would be taken for a duplicate and acknowledged unstored.
func TestSampleOfAFailedBatchIsStoredWhenRetried(t *testing.T) {
	ctx := context.Background()
	db, s := openSyncLog(t, filepath.Join(t.TempDir(), "hub.db"), Options{seenSaveEvery: -1})
	// Hold the committer, so the sample and the bad job queue up for one batch.
	release, running := make(chan struct{}), make(chan struct{})
	held, err := s.group.submit(ctx, func(*sql.Tx) error { close(running); <-release; return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-running
	wait, err := s.AppendSyncAsync(ctx, sample("dev-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.AppendSyncAsync(ctx, sample("dev-a", 1)) // a redelivery in the same batch
	if err != nil {
		t.Fatal(err)
	}
	bad := fmt.Errorf("this job's data is bad")
	failed, err := s.group.submit(ctx, func(*sql.Tx) error { return bad }, nil)
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := held(ctx); err != nil {
		t.Fatal(err)
	}
	if err := failed(ctx); err != bad {
		t.Fatalf("bad job: %v", err)
	}
	stored, err := wait(ctx)
	if err != nil || !stored {
		t.Fatalf("the sample of the failed batch: stored %v, %v; want stored", stored, err)
	}
	if dup, err := again(ctx); err != nil || dup {
		t.Fatalf("its redelivery: stored %v, %v; want a duplicate", dup, err)
	}
	if n := countLog(t, db); n != 1 {
		t.Fatalf("log has %d entries, want 1", n)
	}
}

// TestPartialSaveMarksOnlyWhatItSaved: a round that saves only the oldest changed streams
// (seenSaveBatch at a time) must leave the mark before the first change it did not save;
// otherwise a crash then would forget the unsaved streams' seqs and store their resends
// twice.
func TestPartialSaveMarksOnlyWhatItSaved(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	_, s := openSyncLog(t, path, Options{checkpointEvery: -1, seenSaveEvery: -1})
	for d := range 5 {
		appendAll(t, s, fmt.Sprint("dev-", d), 1, 2, 3)
	}
	appendAll(t, s, "dev-0", 4) // dev-0 stays the oldest change, saved first
	if err := s.group.do(ctx, func(tx *sql.Tx) error { return s.seen.save(ctx, tx, 2) }); err != nil {
		t.Fatal(err)
	}
	db2 := openCrashImage(t, path)
	var saved int
	if err := db2.reader.QueryRow(`SELECT COUNT(*) FROM sync_seen`).Scan(&saved); err != nil || saved != 2 {
		t.Fatalf("%d streams saved (%v), want the 2 oldest", saved, err)
	}
	s2, err := db2.SyncLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	// What the start read from the log is saved at once.
	if mark, last := markAndEnd(t, db2); mark != last {
		t.Fatalf("after the start the mark is %d, the log ends at %d", mark, last)
	}
	for d := range 5 {
		if got := appendAll(t, s2, fmt.Sprint("dev-", d), 1, 2, 3, 4, 5); fmt.Sprint(got) != map[bool]string{true: "[5]", false: "[4 5]"}[d == 0] {
			t.Fatalf("dev-%d resent 1..5 after the crash: stored %v", d, got)
		}
	}
}

// TestSavingLoopKeepsTheMarkUpToDate: left to itself, the store saves the duplicate check
// every round, so a start after a crash reads little of the log.
func TestSavingLoopKeepsTheMarkUpToDate(t *testing.T) {
	db, s := openSyncLog(t, filepath.Join(t.TempDir(), "hub.db"), Options{seenSaveEvery: 5 * time.Millisecond})
	appendAll(t, s, "dev-a", seqRange(1, 50)...)
	// Bounded: a round every 5 ms; on a slow machine up to 20 s.
	for range 4000 {
		if mark, last := markAndEnd(t, db); mark == last {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	mark, last := markAndEnd(t, db)
	t.Fatalf("the saving loop left the mark at %d, the log ends at %d", mark, last)
}

// logLines is a log that a test can read while the store writes to it.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), "msg=\""+msg+"\"")
}

// TestSavingLoopSaysOnceWhenItFails: rounds that keep failing are logged once, not four
// times a second, and the recovery once; samples are stored all the while.
func TestSavingLoopSaysOnceWhenItFails(t *testing.T) {
	var log logLines
	path := filepath.Join(t.TempDir(), "hub.db")
	db, s := openSyncLog(t, path, Options{seenSaveEvery: 2 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	const failed, recovered = "duplicate check not saved; retrying every round", "duplicate check saved again"
	wait := func(what string, n int) {
		t.Helper()
		for range 5000 { // bounded: a round every 2 ms, up to 25 s on a slow machine
			if log.count(what) >= n {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%q logged %d times, want %d", what, log.count(what), n)
	}
	appendAll(t, s, "dev-a", 1) // the stream is in memory from now on
	// A round that cannot write its table fails; the samples' own commits do not need it.
	if _, err := db.writer.Exec(`ALTER TABLE sync_seen RENAME TO sync_seen_away`); err != nil {
		t.Fatal(err)
	}
	for i := range uint64(19) {
		appendAll(t, s, "dev-a", i+2) // each leaves a change to save
		time.Sleep(3 * time.Millisecond)
	}
	wait(failed, 1)
	if _, err := db.writer.Exec(`ALTER TABLE sync_seen_away RENAME TO sync_seen`); err != nil {
		t.Fatal(err)
	}
	wait(recovered, 1)
	if n := log.count(failed); n != 1 {
		t.Fatalf("the failing rounds were logged %d times, want once", n)
	}
	if n := countLog(t, db); n != 20 {
		t.Fatalf("%d samples stored while the rounds failed, want 20", n)
	}
	// The round that recovered saved what the failing ones could not.
	if mark, last := markAndEnd(t, db); mark != last {
		t.Fatalf("after the recovery the mark is %d, the log ends at %d", mark, last)
	}
}

// TestSavingLoopLeavesAnIdleStoreAlone: with nothing to save, the saving rounds take no
// transaction, so an idle hub's writer is not taken, its WAL not flushed and its
// checkpointer not woken four times a second.
func TestSavingLoopLeavesAnIdleStoreAlone(t *testing.T) {
	db, s := openSyncLog(t, filepath.Join(t.TempDir(), "hub.db"), Options{checkpointEvery: -1, seenSaveEvery: 2 * time.Millisecond})
	appendAll(t, s, "dev-a", 1, 2, 3)
	// Bounded: the round that saves those comes within a few intervals.
	for range 5000 {
		if mark, last := markAndEnd(t, db); mark == last {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := db.ckpt.commits.Load()
	time.Sleep(100 * time.Millisecond) // fifty intervals with nothing to save
	if n := db.ckpt.commits.Load() - before; n != 0 {
		t.Fatalf("%d commits in fifty idle saving intervals, want none", n)
	}
}
