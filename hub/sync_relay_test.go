package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/store/sqlite"
)

// relayHub is a hub on a real SQLite file with a fast relay back-off, one account with a
// phone and a band paired with it.
func relayHub(t *testing.T, opts hub.SyncOptions) (*hub.Hub, *clock, devices.Identity, devices.Identity) {
	t.Helper()
	return relayHubWith(t, opts, func(s *sqlite.SyncLog) hub.SyncStore { return s })
}

// relayHubWith is relayHub with the sync store that wrap makes of the SQLite one.
func relayHubWith(t *testing.T, opts hub.SyncOptions, wrap func(*sqlite.SyncLog) hub.SyncStore) (*hub.Hub, *clock, devices.Identity, devices.Identity) {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	o, clk := baseOptions(db)
	o.Sync, o.SyncOptions, o.Commands = wrap(openSyncLog(t, db)), opts, db
	h := hub.New(o)
	accs, err := h.CreateLoadAccounts(ctx, 1, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	phone := registerPhone(t, h, accs[0].AccountID, "phone")
	band := bindGadget(t, h, accs[0].AccountID, devices.Band)
	if err := h.Pair(ctx, phone, band.DeviceID); err != nil {
		t.Fatal(err)
	}
	return h, clk, phone, band
}

// TestRelayOutlastsFailures: a relay whose sends fail many times in a row (a transport
// hiccup, the store failing for a while) keeps its controller: once sending works again,
// every entry arrives, in order. The relay used to give up for good after five failures
// while the phone stayed connected.
func TestRelayOutlastsFailures(t *testing.T) {
	h, clk, phone, band := relayHub(t, hub.SyncOptions{RetryBase: time.Millisecond})
	ctx := context.Background()
	const samples = 5
	for seq := 1; seq <= samples; seq++ {
		if err := h.IngestTelemetry(ctx, band, devices.StreamSteps, steps(clk, seq)); err != nil {
			t.Fatal(err)
		}
	}
	sink := startSink(t, h, phone, 0, &phoneSink{fails: 12})
	es := waitEntries(t, sink, samples)
	var got []uint64
	for _, e := range es {
		got = append(got, e.Seq)
	}
	for i, seq := range got[:samples] {
		if seq != uint64(i+1) {
			t.Fatalf("phone got seqs %v, want 1..%d in order", got, samples)
		}
	}
}

// TestGapPastRetentionByAge: entries older than sync.retention are deleted, and a controller
// that never received them is told so by a gap entry first, then gets the young ones.
func TestGapPastRetentionByAge(t *testing.T) {
	h, clk, phone, band := relayHub(t, hub.SyncOptions{Retention: time.Hour})
	ctx := context.Background()
	send := func(seq int) {
		t.Helper()
		if err := h.IngestTelemetry(ctx, band, devices.StreamSteps, steps(clk, seq)); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	send(2)
	clk.Advance(50 * time.Minute)
	send(3)
	clk.Advance(20 * time.Minute) // 1 and 2 are 70 minutes old now, 3 is 20
	n, err := h.PruneSync(ctx)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d entries (want the 2 older than an hour): %v", n, err)
	}
	got := waitEntries(t, openSink(t, h, phone, 0, 0), 2)
	if g := got[0].Gap; g == nil || g.From != 1 || g.To < got[0].Cursor || got[0].Cursor >= got[1].Cursor {
		t.Fatalf("first entry %+v is not a gap over the deleted entries", got[0])
	}
	if got[1].Gap != nil || got[1].Seq != 3 || len(got) != 2 {
		t.Fatalf("after the gap: %+v, want only seq 3", got[1:])
	}
}
