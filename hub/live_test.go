package hub_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/store/sqlite"
)

func steps(clk *clock, seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"ts":%q,"count":%d}`, seq, clk.Now().Format(time.RFC3339Nano), seq)
}

func location(clk *clock, seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"ts":%q,"lat":52.5,"lon":13.4,"accuracy_m":8}`, seq, clk.Now().Format(time.RFC3339Nano))
}

// TestRelayUnderConcurrentIngest: while three devices publish concurrently and the relay
// moves between reading the log and being fed from memory (a window of 4 and acknowledgements
// 1 ms late overflow its memory feed again and again), the phone gets every entry it may receive exactly once, in
// cursor order: the band's steps and the other phone's positions, never its own.
func TestRelayUnderConcurrentIngest(t *testing.T) {
	h, clk, phone, band := relayHub(t, hub.SyncOptions{RetryBase: time.Millisecond})
	other := registerPhone(t, h, phone.AccountID, "other phone")
	ctx := context.Background()
	const n = 300
	publish := func(id devices.Identity, stream string, body func(*clock, int) []byte, from, to int) {
		for seq := from; seq <= to; seq++ {
			if err := h.IngestTelemetry(ctx, id, stream, body(clk, seq)); err != nil {
				t.Error(err)
				return
			}
		}
	}
	all := func(from, to int) {
		var wg sync.WaitGroup
		for _, d := range []struct {
			id     devices.Identity
			stream string
			body   func(*clock, int) []byte
		}{{band, devices.StreamSteps, steps}, {other, devices.StreamLocation, location}, {phone, devices.StreamLocation, location}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				publish(d.id, d.stream, d.body, from, to)
			}()
		}
		wg.Wait()
	}
	all(1, n/3) // a backlog before the phone connects
	var sink *phoneSink
	done := make(chan struct{})
	go func() {
		defer close(done)
		all(n/3+1, n)
	}()
	sink = openSink(t, h, phone, 4, time.Millisecond)
	<-done
	apptest.Eventually(t, 20*time.Second, func() error {
		if got := len(sink.entries()); got < 2*n {
			return fmt.Errorf("phone has %d entries, want %d", got, 2*n)
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond) // a duplicate would show now
	es := sink.entries()
	seen := map[string]bool{}
	for i, e := range es {
		if i > 0 && e.Cursor <= es[i-1].Cursor {
			t.Fatalf("entry %d: cursor %d after %d", i, e.Cursor, es[i-1].Cursor)
		}
		if e.Device == phone.DeviceID {
			t.Fatalf("the phone got its own entry %+v", e)
		}
		seen[fmt.Sprint(e.Device, e.Seq)] = true
	}
	if len(es) != 2*n || len(seen) != 2*n {
		t.Fatalf("%d entries, %d distinct, want %d", len(es), len(seen), 2*n)
	}
}

// TestLiveRelayFollowsPairings: a relay fed from memory picks up a gadget paired after it
// caught up, and drops the queued entries of a gadget unpaired before they were sent (as a
// read of the log would: entitlement is decided when an entry is sent, not when it was
// written).
func TestLiveRelayFollowsPairings(t *testing.T) {
	h, clk, phone, band := relayHub(t, hub.SyncOptions{RetryBase: time.Millisecond})
	ctx := context.Background()
	sink := openSink(t, h, phone, 2, 0)
	if err := h.IngestTelemetry(ctx, band, devices.StreamSteps, steps(clk, 1)); err != nil {
		t.Fatal(err)
	}
	waitEntries(t, sink, 1)

	// A second band, paired now: its entries reach the phone.
	band2 := bindGadget(t, h, phone.AccountID, devices.Band)
	if err := h.Pair(ctx, phone, band2.DeviceID); err != nil {
		t.Fatal(err)
	}
	if err := h.IngestTelemetry(ctx, band2, devices.StreamSteps, steps(clk, 1)); err != nil {
		t.Fatal(err)
	}
	waitEntries(t, sink, 2)

	// The phone stops acknowledging; band 2 sends four more: two go out (the window), two
	// wait. Band 2 is unpaired: the two waiting never reach the phone.
	sink.mu.Lock()
	sink.hold = true
	sink.mu.Unlock()
	for seq := 2; seq <= 5; seq++ {
		if err := h.IngestTelemetry(ctx, band2, devices.StreamSteps, steps(clk, seq)); err != nil {
			t.Fatal(err)
		}
	}
	waitEntries(t, sink, 4)
	if err := h.Unpair(ctx, phone, band2.DeviceID); err != nil {
		t.Fatal(err)
	}
	sink.release()
	// The first band still reaches the phone, after nothing more of band 2.
	if err := h.IngestTelemetry(ctx, band, devices.StreamSteps, steps(clk, 2)); err != nil {
		t.Fatal(err)
	}
	es := waitEntries(t, sink, 5)
	time.Sleep(50 * time.Millisecond)
	es = sink.entries()
	var got []string
	for _, e := range es {
		who := "band"
		if e.Device == band2.DeviceID {
			who = "band2"
		}
		got = append(got, fmt.Sprint(who, ":", e.Seq))
	}
	want := []string{"band:1", "band2:1", "band2:2", "band2:3", "band:2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("phone got %v, want %v", got, want)
	}
}

// countingSync is a sync store without the commit hook (hub.SyncCommitNotifier) that counts
// the relay's reads of the log.
type countingSync struct {
	hub.SyncStore
	reads atomic.Int64
}

func (c *countingSync) SyncEntriesFor(ctx context.Context, controllerID, accountID string, after int64, limit int) ([]hub.SyncRecord, int64, error) {
	c.reads.Add(1)
	return c.SyncStore.SyncEntriesFor(ctx, controllerID, accountID, after, limit)
}

// TestRelayWithoutCommitHook: with a store that does not hand over its commits, the relay
// reads the log on each wake and, caught up, waits: it once read it again and again, without
// pause, because it tried to go live and could not.
func TestRelayWithoutCommitHook(t *testing.T) {
	ctx := context.Background()
	var store *countingSync
	h, clk, phone, band := relayHubWith(t, hub.SyncOptions{RetryBase: time.Millisecond}, func(s *sqlite.SyncLog) hub.SyncStore {
		store = &countingSync{SyncStore: s} // hides OnSyncCommit: a store without the hook
		return store
	})
	sink := openSink(t, h, phone, 0, 0)
	for seq := 1; seq <= 3; seq++ {
		if err := h.IngestTelemetry(ctx, band, devices.StreamSteps, steps(clk, seq)); err != nil {
			t.Fatal(err)
		}
	}
	waitEntries(t, sink, 3)
	time.Sleep(50 * time.Millisecond) // the reads the last acknowledgements cause
	before := store.reads.Load()
	time.Sleep(100 * time.Millisecond)
	if n := store.reads.Load() - before; n != 0 {
		t.Fatalf("an idle relay read the log %d times", n)
	}
}
