package simulator

import (
	"encoding/json"
	"log/slog"
	"slices"
	"testing"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/devices"
)

// TestReceiveCountsEveryRepeat: a sample received many times is delivered once and every
// other receipt is a duplicate, however many there are (the per-sample counter once wrapped
// at 256, so the 257th copy counted as a new delivery).
func TestReceiveCountsEveryRepeat(t *testing.T) {
	st := &gadgetStats{phone: "dev_phone", sentAt: []int64{1}, received: make([]uint32, 1)}
	r := &loadRun{log: slog.New(slog.DiscardHandler), byID: map[string]*gadgetStats{"dev_band": st}}
	p := &loadPhone{loadDevice: &loadDevice{creds: apiclient.Credentials{DeviceID: "dev_phone"}}}
	payload, err := json.Marshal(devices.SyncEntry{Cursor: 7, Device: "dev_band", Stream: devices.StreamSteps, Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	const copies = 600
	for range copies {
		r.receive(p, payload)
	}
	if d, dups := r.delivered.Load(), r.dups.Load(); d != 1 || dups != copies-1 {
		t.Errorf("delivered %d, duplicates %d; want 1 and %d", d, dups, copies-1)
	}
	if r.misrouted.Load() != 0 || r.missing() != 0 {
		t.Errorf("misrouted %d, missing %d", r.misrouted.Load(), r.missing())
	}
}

// TestLoadFailures: a run fails on anything lost or misrouted and on publishes that failed or
// were never acknowledged, and says which.
func TestLoadFailures(t *testing.T) {
	if fs := (LoadResult{Sent: 10, Acked: 10, Delivered: 10, Duplicates: 3}).Failures(); fs != nil {
		t.Errorf("clean run: %v", fs)
	}
	got := LoadResult{Sent: 10, Acked: 7, PublishErrors: 3, Unacked: 3, Lost: 1, Misrouted: 2}.Failures()
	want := []string{"1 lost", "2 misrouted", "3 publish errors", "3 unacknowledged"}
	if !slices.Equal(got, want) {
		t.Errorf("Failures() = %q, want %q", got, want)
	}
}
