package hub

import (
	"context"
)

// SyncCommitNotifier is a SyncStore that hands the hub every sync entry once the commit that
// stored it is durable (readers may see it a little earlier), in cursor order and before the
// append returns. With it, a relay
// that has caught up with the log is fed the new entries from memory instead of reading
// each commit back from the store: at high rates that read was the relay's main cost.
type SyncCommitNotifier interface {
	OnSyncCommit(func(SyncRecord))
}

// liveState is a relay's memory feed.
//
// A relay reads the sync log (fill) until a read returns less than it asked for: it has
// then sent every entry it may receive that was committed before that read began. Before
// each such read it arms: from then on committed entries it may receive are also kept in
// tail. When the read shows it caught up it goes live: tail holds exactly what was committed
// during the read or after, less what the read already returned (cursor ≤ sent), and every
// later commit is appended. Nothing is missed (a commit is either before the read, so in it,
// or handed to committed after arming) and nothing is sent twice (floor).
//
// Entitlement in memory uses the pairings loaded when arming; a change of the controller's
// pairings sends its relay back to the log (leaveLive, from pairingChanged), whose reads
// join the pairings as they are then. So does a tail that reaches the window (the controller is not keeping up): memory
// stays bounded by configuration and the log is the backlog.
type liveState struct {
	on, arming bool
	pairs      map[string]bool // gadgets paired with this controller, as of arming
	pairsGen   uint64          // syncState.pairGen when pairs was loaded
	tail       []SyncRecord
	floor      int64  // live: the highest cursor handled (sent, queued or not entitled)
	gen        uint64 // bumped whenever tail is dropped, so an in-progress send does not trim it
}

// committed is the store's commit hook: it offers the entry to the account's relays and
// wakes those that have something to do. r.Data is kept: the store is given the
// telemetry's own encoding (devices.Telemetry.Body), which nothing writes to afterwards.
func (st *syncState) committed(r SyncRecord) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for s := range st.byAccount[r.AccountID] {
		if s.offer(r) {
			s.poke()
		}
	}
}

// offer queues a committed entry for a relay that is arming or live, if the controller may
// receive it, and reports whether the relay must wake: it queued the entry, fell back to the
// log, or reads the log anyway.
func (s *SyncSession) offer(r SyncRecord) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.live
	if !l.on && !l.arming {
		return true
	}
	if l.on {
		if r.Cursor <= l.floor {
			return false // the read that caught up returned it already
		}
		l.floor = r.Cursor
	}
	if r.DeviceID == s.id.DeviceID || (!r.Wide && !l.pairs[r.DeviceID]) {
		return false
	}
	if len(l.tail) >= s.window {
		s.dropLiveLocked() // not keeping up: the log is the backlog
		return true
	}
	l.tail = append(l.tail, r)
	return true
}

// arm loads the controller's pairings (when they changed) and starts keeping commits, just
// before a read of the log.
func (s *SyncSession) arm(ctx context.Context) error {
	st := s.h.sync
	for {
		st.pairMu.RLock()
		gen := st.pairGen
		st.pairMu.RUnlock()
		s.mu.Lock()
		have := s.live.pairs != nil && s.live.pairsGen == gen
		s.mu.Unlock()
		var pairs map[string]bool
		if !have {
			ps, err := st.store.PairingsOf(ctx, s.id.DeviceID)
			if err != nil {
				return err
			}
			pairs = map[string]bool{}
			for _, p := range ps {
				if p.ControllerID == s.id.DeviceID && p.AccountID == s.id.AccountID {
					pairs[p.GadgetID] = true
				}
			}
		}
		s.mu.Lock()
		if pairs != nil {
			s.live.pairs, s.live.pairsGen = pairs, gen
		}
		s.live.arming, s.live.tail = true, s.live.tail[:0]
		s.mu.Unlock()
		// A change after this point finds the relay arming and stops it; one before it,
		// after the load, is caught here.
		st.pairMu.RLock()
		same := st.pairGen == gen
		st.pairMu.RUnlock()
		if same {
			return nil
		}
	}
}

// goLive switches to the memory feed after a read that returned everything after sent.
func (s *SyncSession) goLive(sent int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.live
	if !l.arming {
		return // stopped meanwhile: read the log again
	}
	keep := l.tail[:0]
	for _, r := range l.tail {
		if r.Cursor > sent {
			keep = append(keep, r)
		}
	}
	l.tail, l.arming, l.on = keep, false, true
	l.floor = sent
	if n := len(keep); n > 0 {
		l.floor = keep[n-1].Cursor
	}
}

// fillLive sends up to room queued entries and returns how many it sent and the cursor of
// the last one sent (sent unchanged when none). That, not the floor, is where a relay sent
// back to the log reads on: entries it skipped as not entitled are looked at again, with
// the pairings as they are then (a pairing made meanwhile entitles it to them, as a read
// of the log would have).
func (s *SyncSession) fillLive(room int, sent int64) (n int, next int64, err error) {
	s.mu.Lock()
	k := min(room, len(s.live.tail))
	batch := append([]SyncRecord(nil), s.live.tail[:k]...)
	gen := s.live.gen
	s.mu.Unlock()
	n, next, err = s.sendRecords(batch, 0, sent)
	err = s.flushed(n, err)
	// What was sent is in flight; the rest stays queued.
	s.mu.Lock()
	if s.live.gen == gen && s.live.on {
		s.live.tail = s.live.tail[n:]
	}
	s.mu.Unlock()
	return n, next, err
}

// leaveLive sends the relay back to the log and wakes it.
func (s *SyncSession) leaveLive() {
	s.mu.Lock()
	s.dropLiveLocked()
	s.mu.Unlock()
	s.poke()
}

func (s *SyncSession) dropLiveLocked() {
	l := &s.live
	l.on, l.arming, l.tail = false, false, nil
	l.gen++
}
