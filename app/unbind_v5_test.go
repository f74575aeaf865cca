package app_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/internal/mqttwire"
)

// TestSelfUnbindWaitsForTheAnswerOnItsResponseTopic: an MQTT 5 phone unbinds itself with a
// Response Topic of its own under devices/{id}/. The hub answers there and then drops the
// session, but only once the phone has acknowledged the answer: while the answer is
// unacknowledged the connection stays open, and the phone's PUBACK ends it. (The drop used
// to wait only for the commands and response topics, so it could cut this answer off.)
func TestSelfUnbindWaitsForTheAnswerOnItsResponseTopic(t *testing.T) {
	w := newWorld(t)
	id := w.annaPhone.DeviceID
	rt := devices.DevicesPrefix + "/" + id + "/answers"
	c := rawDevice(t, w.h.MQTTAddr(), 5, id, w.annaPhone.Secret, true)
	if code := c.subscribe(t, rt); code != 1 {
		t.Fatalf("SUBACK %#x for %s", code, rt)
	}
	args, _ := json.Marshal(devices.UnbindArgs{Password: w.annaPassword})
	req, _ := json.Marshal(devices.Request{ID: "self-unbind", Op: devices.OpUnbind, Args: args})
	c.publish(t, 0x32, devices.RequestTopic(id), append(propString(0x08, rt), propBinary(0x09, []byte("corr-1"))...), req)

	// Read by hand, acknowledging nothing, until the answer arrives.
	var answerPID [2]byte
	for {
		hdr, body, err := mqttwire.ReadPacket(c.c)
		if err != nil {
			t.Fatalf("waiting for the answer on %s: %v", rt, err)
		}
		if hdr>>4 != 3 {
			continue
		}
		topic, _, payload := parsePublish(5, hdr, body)
		if topic != rt {
			continue
		}
		var resp devices.Response
		if err := json.Unmarshal(payload, &resp); err != nil || resp.ID != "self-unbind" || !resp.OK {
			t.Fatalf("answer %s: %v", payload, err)
		}
		n := 2 + (int(body[0])<<8 | int(body[1]))
		answerPID = [2]byte{body[n], body[n+1]}
		break
	}

	// Unacknowledged, the answer keeps the connection open.
	_ = c.c.SetReadDeadline(time.Now().Add(quietFor))
	for {
		hdr, body, err := mqttwire.ReadPacket(c.c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil || hdr == 0xe0 {
			t.Fatalf("the hub ended the session (%#x % x, %v) before the phone acknowledged the answer", hdr, body, err)
		}
	}

	// The PUBACK lets the drop go on: the hub disconnects. The drop's own limit for an
	// unacknowledged answer is 10 s (broker.defaultDropFlush); an end within 9 s of the
	// PUBACK is the PUBACK's doing, not that limit's.
	_ = c.c.SetReadDeadline(time.Now().Add(9 * time.Second))
	if _, err := c.c.Write([]byte{0x40, 2, answerPID[0], answerPID[1]}); err != nil {
		t.Fatal(err)
	}
	for {
		hdr, _, err := mqttwire.ReadPacket(c.c)
		if errors.Is(err, io.EOF) || hdr == 0xe0 {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the hub did not end the unbound phone's session after its PUBACK (it waits for the drop's limit)")
			}
			return // reset: closed
		}
	}
}
