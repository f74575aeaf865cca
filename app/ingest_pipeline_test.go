package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
)

// TestPipelinedPublishesAnsweredInOrder: a band sends 200 QoS 1 samples without waiting for
// any PUBACK (the hub commits them in shared transactions and answers from another
// goroutine), with an invalid one in the middle, then a QoS 1 request. Every PUBACK comes
// in the order of the publishes, as MQTT requires, with the refusal's reason code in its
// place; the request is answered after all of them; and the phone gets the 199 valid
// samples once each, in the order they were sent.
func TestPipelinedPublishesAnsweredInOrder(t *testing.T) {
	h := apptest.Start(t, nil)
	w := newIngestWorld(t, h.URL(), h.MQTTAddr(), h.Config.Admin.Token, 1)
	band := w.bands[0]
	d := dialDevice(t, h.MQTTAddr(), 5, band.DeviceID, band.Secret, true)

	const n, bad = 200, 100
	for seq := uint64(1); seq <= n; seq++ {
		payload := stepsSample(seq)
		if seq == bad {
			payload = fmt.Appendf(nil, `{"seq":%d,"ts":%q,"count":-5}`, seq, time.Now().UTC().Format(time.RFC3339Nano))
		}
		d.publish(t, devices.StreamSteps, uint16(seq), false, payload)
	}
	req := ingFrame(0x32, ingStr(devices.RequestTopic(band.DeviceID)), []byte{0, n + 1}, []byte{0}, []byte(`{"id":"r1","op":"bind_code"}`))
	if _, err := d.c.Write(req); err != nil {
		t.Fatal(err)
	}
	for pid := uint16(1); pid <= n+1; pid++ {
		code := d.nextPuback(t, pid) // fails on a PUBACK out of order
		want := byte(0x00)
		if pid == bad {
			want = 0x99 // payload format invalid
		}
		if code != want {
			t.Fatalf("PUBACK %d: reason %#x, want %#x", pid, code, want)
		}
	}

	apptest.Eventually(t, 20*time.Second, func() error {
		got := 0
		for _, e := range w.phone.snapshot() {
			if e.Gap == nil && e.Device == band.DeviceID {
				got++
			}
		}
		if got < n-1 {
			return fmt.Errorf("phone has %d of %d samples", got, n-1)
		}
		return nil
	})
	var last uint64
	for _, e := range w.phone.snapshot() {
		if e.Gap != nil || e.Device != band.DeviceID {
			continue
		}
		if e.Seq == bad {
			t.Fatal("the refused sample was relayed")
		}
		if e.Seq <= last {
			t.Fatalf("phone got seq %d after %d", e.Seq, last)
		}
		last = e.Seq
	}
	if last != n {
		t.Fatalf("last seq %d, want %d", last, n)
	}
}
