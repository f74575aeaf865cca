package app_test

import (
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/internal/mqttwire"
)

// TestRelayToV5PhoneHonoursReceiveMaximum: an MQTT 5 phone that allows 2 unacknowledged
// messages (Receive Maximum) gets its sync entries as well-formed v5 PUBLISHes (the relay
// encodes and writes them itself, in batches), never more than 2 unacknowledged, and the
// rest after it acknowledges, in order.
func TestRelayToV5PhoneHonoursReceiveMaximum(t *testing.T) {
	w, phone, band := pairWorld(t)
	pair(t, phone, band, 1)
	phone.close()
	w.waitOffline(t, phone.id)
	for seq := uint64(1); seq <= 5; seq++ {
		band.telemetry(t, devices.StreamSteps, seq, `"count":1`)
	}
	c, code, _ := rawDial(t, w.h.MQTTAddr(), connSpec{version: 5, id: phone.id, user: phone.id, pass: w.annaPhone.Secret, clean: true,
		props: propUint16(0x21, 2)}) // Receive Maximum 2
	if code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	// The SUBSCRIBE by hand: the hub may start relaying before its SUBACK (MQTT allows it),
	// and the entries must not be read past unacknowledged.
	sub := mqttwire.Frame(0x82, []byte{0, 1}, mqttwire.Props(), mqttwire.Str(devices.ControllerSyncTopic(phone.id)), []byte{1})
	if _, err := c.c.Write(sub); err != nil {
		t.Fatal(err)
	}
	type held struct {
		pid   [2]byte
		entry devices.SyncEntry
	}
	// next reads the next sync entry without acknowledging it, or reports that none came
	// within wait.
	next := func(wait time.Duration) (held, bool) {
		t.Helper()
		for {
			_ = c.c.SetReadDeadline(time.Now().Add(wait))
			hdr, body, err := mqttwire.ReadPacket(c.c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return held{}, false
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if hdr>>4 == 9 && body[len(body)-1] != 1 {
				t.Fatalf("SUBACK % x", body)
			}
			if hdr>>4 != 3 {
				continue
			}
			topic, _, payload := parsePublish(5, hdr, body)
			if topic != devices.ControllerSyncTopic(phone.id) {
				continue
			}
			var h held
			n := 2 + (int(body[0])<<8 | int(body[1]))
			copy(h.pid[:], body[n:n+2])
			if err := json.Unmarshal(payload, &h.entry); err != nil {
				t.Fatalf("sync entry %q: %v", payload, err)
			}
			return h, true
		}
	}
	var got []uint64
	for round := 0; len(got) < 5; round++ {
		if round > 5 {
			t.Fatalf("after %d rounds the phone has seqs %v", round, got)
		}
		var batch []held
		for len(batch) < 2 && len(got)+len(batch) < 5 {
			h, ok := next(5 * time.Second)
			if !ok {
				t.Fatalf("no entry after seqs %v", got)
			}
			batch = append(batch, h)
		}
		if len(got)+len(batch) < 5 {
			if extra, ok := next(300 * time.Millisecond); ok {
				t.Fatalf("a third unacknowledged entry (seq %d) with Receive Maximum 2", extra.entry.Seq)
			}
		}
		for _, h := range batch {
			got = append(got, h.entry.Seq)
			if _, err := c.c.Write([]byte{0x40, 2, h.pid[0], h.pid[1]}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("seqs %v, want 1..5 in order", got)
		}
	}
}
