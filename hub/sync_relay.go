package hub

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/devicehub/devicehub/devices"
)

// SyncOptions tune the sync log and its relay.
type SyncOptions struct {
	// Retention is how long entries are kept (0: forever).
	Retention time.Duration
	// MaxEntries bounds each account's log (0: unbounded).
	MaxEntries int
	// Window is how many entries may be sent to one controller and not yet acknowledged by
	// its MQTT client (PUBACK). It bounds the memory a controller costs, however far behind
	// it is: the rest waits in the sync log.
	Window int
	// PruneInterval is how often retention runs (0: 1 minute).
	PruneInterval time.Duration
	// RetryBase is the first wait of a relay after a failed read or send (0: 200 ms); it
	// doubles with each further failure up to 32 times RetryBase.
	RetryBase time.Duration
}

// syncState is the hub's in-memory side of pairing and sync: the relays of the online
// controllers and a cache of which gadgets are paired (consulted per telemetry message).
type syncState struct {
	store SyncStore
	opts  SyncOptions

	mu sync.Mutex
	// relays by account, so a commit wakes exactly the controllers that might want it.
	byAccount map[string]map[*SyncSession]struct{}
	// byController holds the current session of each controller (a reconnect replaces it).
	byController map[string]*SyncSession

	pairMu  sync.RWMutex
	paired  map[string]bool // gadget ID → paired with at least one controller
	pairGen uint64          // bumped on every change, so a load that raced a change is not cached

	// notified: the store hands every commit to committed (live.go), which wakes the relays.
	notified bool
}

func newSyncState(store SyncStore, opts SyncOptions) *syncState {
	if opts.Window <= 0 {
		opts.Window = 256
	}
	if opts.PruneInterval <= 0 {
		opts.PruneInterval = time.Minute
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 200 * time.Millisecond
	}
	st := &syncState{store: store, opts: opts, byAccount: map[string]map[*SyncSession]struct{}{},
		byController: map[string]*SyncSession{}, paired: map[string]bool{}}
	if n, ok := store.(SyncCommitNotifier); ok {
		n.OnSyncCommit(st.committed)
		st.notified = true
	}
	return st
}

// SyncSession is the relay to one connected controller: it streams the sync log from the
// controller's durable cursor, in cursor order, keeping at most a window of entries
// unacknowledged by the transport.
type SyncSession struct {
	h      *Hub
	id     devices.Identity
	window int
	send   func(cursor int64, payload []byte) error
	flush  func() error // nil: send writes each entry itself

	wake    chan struct{} // capacity 1: wake-ups coalesce
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started sync.Once

	mu       sync.Mutex
	inflight int
	live     liveState // live.go; guarded by mu
}

// OpenSync prepares relaying the sync log to a connected controller; Start begins it (so the
// transport can register the session before the first PUBACK can arrive). send must publish the
// payload to the controller's sync topic at QoS 1 without blocking for long; the transport
// calls Delivered with the cursor when the controller's client acknowledges it. window (≤ 0:
// the configured one) caps the unacknowledged entries. A controller has one session at a
// time: opening another closes the previous one.
func (h *Hub) OpenSync(id devices.Identity, window int, send func(cursor int64, payload []byte) error) *SyncSession {
	return h.OpenSyncBatched(id, window, send, nil)
}

// OpenSyncBatched is OpenSync for a transport that buffers what send is given: flush is
// called after each run of entries the relay sends back to back (up to a window's worth),
// so the transport writes them to the controller at once, one write instead of one per
// entry. An entry sent is in flight from send on; a flush that fails means the connection
// is broken, and the transport must close it (which closes the session): the controller
// catches up from its durable cursor when it connects again.
func (h *Hub) OpenSyncBatched(id devices.Identity, window int, send func(cursor int64, payload []byte) error, flush func() error) *SyncSession {
	if h.sync == nil || !id.Bound() || !devices.IsController(id.Type) {
		return nil
	}
	if window <= 0 || window > h.sync.opts.Window {
		window = h.sync.opts.Window
	}
	s := &SyncSession{h: h, id: id, window: window, send: send, flush: flush,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	h.sync.mu.Lock()
	old := h.sync.byController[id.DeviceID]
	h.sync.byController[id.DeviceID] = s
	if h.sync.byAccount[id.AccountID] == nil {
		h.sync.byAccount[id.AccountID] = map[*SyncSession]struct{}{}
	}
	h.sync.byAccount[id.AccountID][s] = struct{}{}
	h.sync.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return s
}

// Start begins sending; calling it again does nothing.
func (s *SyncSession) Start() {
	s.started.Do(func() { go s.run() })
}

// Delivered tells the session the controller's client acknowledged an entry.
func (s *SyncSession) Delivered(int64) {
	s.mu.Lock()
	if s.inflight > 0 {
		s.inflight--
	}
	room := s.window - s.inflight
	s.mu.Unlock()
	// The relay refills only once half the window is free (see run): waking it for every
	// acknowledgement before that costs a context switch each and does nothing.
	if refills(room, s.window) {
		s.poke()
	}
}

// refills reports whether the relay sends more with room free in a window of size window:
// in batches of at least half a window while the controller is busy, so a fast stream
// costs one query per many entries rather than one per acknowledgement.
func refills(room, window int) bool {
	return room > 0 && room >= window/2
}

// Close stops the session and waits for its goroutine; it is safe to call more than once.
func (s *SyncSession) Close() {
	s.once.Do(func() {
		close(s.stop)
		st := s.h.sync
		st.mu.Lock()
		if st.byController[s.id.DeviceID] == s {
			delete(st.byController, s.id.DeviceID)
		}
		if m := st.byAccount[s.id.AccountID]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(st.byAccount, s.id.AccountID)
			}
		}
		st.mu.Unlock()
	})
	// A session never started has no goroutine to wait for; starting it now would send.
	s.started.Do(func() { close(s.done) })
	<-s.done
}

func (s *SyncSession) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// notifyAccount wakes the relays of an account's online controllers after a commit.
func (st *syncState) notifyAccount(accountID string) {
	st.mu.Lock()
	for s := range st.byAccount[accountID] {
		s.poke()
	}
	st.mu.Unlock()
}

// closeController ends the relay of a controller whose binding ended.
func (st *syncState) closeController(deviceID string) {
	st.mu.Lock()
	s := st.byController[deviceID]
	st.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

func (s *SyncSession) run() {
	defer close(s.done)
	log := s.h.log.With("controller", s.id.DeviceID)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// A relay never gives up while its controller is connected: the transport closes the
	// session when the controller goes, so every error here (the store failing for a while,
	// a publish refused) is waited out with a capped back-off, and the entries wait in the
	// sync log meanwhile.
	failures := 0
	retry := func(what string, err error) bool {
		failures++
		wait := s.h.sync.opts.RetryBase << min(failures-1, 5)
		// The first failure is usually the controller going away (the transport closes the
		// session a moment later): not worth a warning on its own.
		level := slog.LevelWarn
		if failures == 1 {
			level = slog.LevelDebug
		}
		log.Log(ctx, level, "sync relay: "+what, "error", err, "failures", failures, "retry_in", wait)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-s.stop:
			return false
		}
	}
	var sent int64
	for {
		c, err := s.h.sync.store.SyncCursor(ctx, s.id.DeviceID)
		if err == nil {
			sent = c
			break
		}
		if ctx.Err() != nil || !retry("read cursor", err) {
			return
		}
	}
	failures = 0
	for {
		s.mu.Lock()
		room := s.window - s.inflight
		live := s.live.on
		s.mu.Unlock()
		if refills(room, s.window) {
			var n int
			var next int64
			var err error
			if live {
				n, next, err = s.fillLive(room, sent)
			} else {
				if s.h.sync.notified {
					if err := s.arm(ctx); err != nil {
						if ctx.Err() != nil || !retry("load pairings", err) {
							return
						}
						continue
					}
				}
				n, next, err = s.fill(ctx, sent, room)
			}
			// What was sent before an error is in flight: go on after it.
			sent = next
			switch {
			case err != nil && ctx.Err() != nil:
				return
			case err != nil:
				if !retry("deliver", err) {
					return
				}
				continue
			}
			failures = 0
			if n == room {
				continue // more may be waiting; the window decides
			}
			if !live && s.h.sync.notified {
				// Caught up with the log: from here on, commits come from memory.
				s.goLive(sent)
				continue
			}
		}
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
	}
}

// fill sends up to room entries after cursor sent, preceded by a gap notice when retention
// deleted entries the controller never got. It returns how many it sent and the new cursor.
func (s *SyncSession) fill(ctx context.Context, sent int64, room int) (n int, next int64, err error) {
	entries, pruned, err := s.h.sync.store.SyncEntriesFor(ctx, s.id.DeviceID, s.id.AccountID, sent, room)
	if err != nil {
		return 0, sent, err
	}
	defer func() { err = s.flushed(n, err) }()
	if pruned > sent {
		// Never skipped silently: the controller learns which cursors it will not get.
		e := devices.SyncEntry{Cursor: pruned, Gap: &devices.Gap{From: sent + 1, To: pruned}, Data: json.RawMessage("null")}
		if err := s.deliver(e); err != nil {
			return n, sent, err
		}
		sent, n = pruned, n+1
	}
	return s.sendRecords(entries[:min(len(entries), room-n)], n, sent)
}

// sendRecords delivers rs, after n entries of this batch went out already up to cursor sent,
// and returns the batch's count and last cursor.
func (s *SyncSession) sendRecords(rs []SyncRecord, n int, sent int64) (int, int64, error) {
	for _, r := range rs {
		e := devices.SyncEntry{Cursor: r.Cursor, Device: r.DeviceID, Stream: r.Stream, Seq: r.Seq, TS: r.TS, Data: r.Data}
		if err := s.deliver(e); err != nil {
			return n, sent, err
		}
		sent, n = r.Cursor, n+1
	}
	return n, sent, nil
}

// flushed ends a batch of n entries: a batching transport (OpenSyncBatched) writes it out.
// What was sent before an error is in flight, so it is flushed too.
func (s *SyncSession) flushed(n int, err error) error {
	if n > 0 && s.flush != nil {
		if ferr := s.flush(); ferr != nil && err == nil {
			return ferr
		}
	}
	return err
}

func (s *SyncSession) deliver(e devices.SyncEntry) error {
	b, err := e.MarshalJSON()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.inflight++
	s.mu.Unlock()
	if err := s.send(e.Cursor, b); err != nil {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
		return err
	}
	return nil
}

// SyncAck records a controller's durable cursor.
func (h *Hub) SyncAck(ctx context.Context, id devices.Identity, cursor int64) error {
	if err := requireBoundController(id); err != nil {
		return err
	}
	if cursor < 1 {
		return FieldError(EInvalid, "args.cursor", "cursor must be at least 1")
	}
	if h.sync == nil {
		return Errorf(EInternal, "sync is not configured")
	}
	return h.sync.store.AckSync(ctx, id.DeviceID, id.AccountID, cursor, h.clock.Now())
}

// PruneSync applies the configured retention once and returns how many entries it deleted.
// Controllers whose cursor falls below what was deleted are told of the gap when the relay
// next reads for them.
func (h *Hub) PruneSync(ctx context.Context) (int, error) {
	if h.sync == nil {
		return 0, nil
	}
	older := time.Time{}
	if h.sync.opts.Retention > 0 {
		older = h.clock.Now().Add(-h.sync.opts.Retention)
	}
	total := 0
	// Bounded: at most 100 rounds of 10,000 per call; the next tick continues.
	for range 100 {
		n, err := h.sync.store.PruneSync(ctx, older, h.sync.opts.MaxEntries, 10000)
		total += n
		if err != nil {
			return total, err
		}
		if n < 10000 {
			break
		}
	}
	if total > 0 {
		// Wake every relay: one of them may now owe its controller a gap notice.
		h.sync.mu.Lock()
		for _, s := range h.sync.byController {
			s.poke()
		}
		h.sync.mu.Unlock()
	}
	return total, nil
}

// RunRetention prunes the sync log every PruneInterval until ctx ends.
func (h *Hub) RunRetention(ctx context.Context) {
	if h.sync == nil {
		return
	}
	t := time.NewTicker(h.sync.opts.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := h.PruneSync(ctx); err != nil {
				h.log.Warn("sync retention", "error", err)
			} else if n > 0 {
				h.log.Info("sync retention", "deleted", n)
			}
		}
	}
}
