package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// TestSeqStartsAfreshWithANewBinding: a band unbound and bound again to the same account
// (factory reset, or its owner re-pairing it) starts its seqs at 1 again. Its new samples
// are stored, not dropped as duplicates of the old binding's; within one binding a repeated
// seq is still stored once.
func TestSeqStartsAfreshWithANewBinding(t *testing.T) {
	h, _, clk, anna, _, _ := pairingHub(t)
	ctx := context.Background()
	phone := registerPhone(t, h, anna.AccountID, "phone")
	band := bindGadget(t, h, anna.AccountID, devices.Band)
	send := func(seq, count int) {
		t.Helper()
		p := fmt.Appendf(nil, `{"seq":%d,"ts":%q,"count":%d}`, seq, clk.Now().Format(time.RFC3339Nano), count)
		if err := h.IngestTelemetry(ctx, band, devices.StreamSteps, p); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
	counts := func() []int {
		t.Helper()
		page, err := h.Telemetry(ctx, anna.AccountID, band.DeviceID, devices.StreamSteps, time.Time{}, time.Time{}, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, s := range page.Samples {
			var v struct{ Count int }
			if err := json.Unmarshal(s.Data.(json.RawMessage), &v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v.Count)
		}
		return out
	}
	if err := h.Pair(ctx, phone, band.DeviceID); err != nil {
		t.Fatal(err)
	}
	send(1, 10)
	send(2, 20)
	send(2, 20) // a redelivery
	if got := counts(); fmt.Sprint(got) != "[10 20]" {
		t.Fatalf("first binding: counts %v, want [10 20]", got)
	}
	if err := h.Unbind(ctx, anna.AccountID, band.DeviceID, anna.Password, "test"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	bc, err := h.RequestBindCode(ctx, band)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Bind(ctx, anna.AccountID, band.DeviceID, bc.Code, "test"); err != nil {
		t.Fatal(err)
	}
	if band, err = h.DeviceIdentity(ctx, band.DeviceID); err != nil {
		t.Fatal(err)
	}
	if err := h.Pair(ctx, phone, band.DeviceID); err != nil {
		t.Fatal(err)
	}
	send(1, 30)
	send(2, 40)
	send(2, 40)
	if got := counts(); fmt.Sprint(got) != "[10 20 30 40]" {
		t.Fatalf("after binding again: counts %v, want [10 20 30 40] (the new binding's seqs stored)", got)
	}
}

// TestLocationAge: the owner's location answer is the newest fix of the phone's current
// binding with its age by the hub's clock, and not_found before the phone sent any.
func TestLocationAge(t *testing.T) {
	h, clk, phone, _ := relayHub(t, hub.SyncOptions{})
	ctx := context.Background()
	if _, err := h.Location(ctx, phone.AccountID, phone.DeviceID); hub.ErrorCode(err) != hub.ENotFound {
		t.Fatalf("before any fix: %v, want not_found", err)
	}
	fix := func(seq int, lat float64) {
		t.Helper()
		p := fmt.Appendf(nil, `{"seq":%d,"ts":%q,"lat":%v,"lon":13.4,"accuracy_m":8}`, seq, clk.Now().Format(time.RFC3339Nano), lat)
		if err := h.IngestTelemetry(ctx, phone, devices.StreamLocation, p); err != nil {
			t.Fatal(err)
		}
	}
	fix(1, 52.1)
	clk.Advance(time.Minute)
	fix(2, 52.2)
	clk.Advance(90 * time.Second)
	loc, err := h.Location(ctx, phone.AccountID, phone.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if loc.Lat != 52.2 || loc.AccuracyM != 8 || loc.AgeSeconds != 90 {
		t.Fatalf("location %+v, want the newest fix (52.2) aged 90 s", loc)
	}
}
