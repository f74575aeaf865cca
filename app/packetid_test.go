package app_test

import (
	"strings"
	"testing"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/internal/mqttwire"
)

// TestResponseKeepsItsPacketID: the hub's answer to a QoS 1 request is a QoS 1 message like
// any other, redelivered after a reconnect until the device acknowledges it, even when it got
// the packet ID the request itself carried. mochi keeps the client's and the server's IDs
// in one table, and acknowledging the request (same ID) used to delete the answer's entry:
// the answer was then never resent, and a device unbinding itself could be disconnected
// before its answer was written (TestUnbindOverMQTT failed that way under load).
func TestResponseKeepsItsPacketID(t *testing.T) {
	w := newWorld(t)
	addr := w.h.MQTTAddr()
	id, secret := w.borisPhone.DeviceID, w.borisPhone.Secret
	c, code, _ := rawDial(t, addr, connSpec{version: 4, id: id, user: id, pass: secret})
	if code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	if code := c.subscribe(t, devices.ResponseTopic(id)); code != 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	// The first message the hub sends this connection takes ID 1 unless 1 is in use: the
	// request takes 1 as well.
	c.pid = 0
	c.publish(t, 0x32, devices.RequestTopic(id), nil, []byte(`{"id":"first","op":"settings_get"}`))
	answer := func(c *rawClient, want string) (hdr byte) {
		t.Helper()
		for {
			hdr, body, err := mqttwire.ReadPacket(c.c)
			if err != nil {
				t.Fatalf("waiting for the answer %q: %v", want, err)
			}
			if hdr>>4 == 3 && strings.Contains(string(body), `"id":"`+want+`"`) {
				return hdr // not acknowledged
			}
		}
	}
	answer(c, "first")
	_ = c.c.Close()
	noClientsConnected(t, w.h)

	// Back with the same session: the unacknowledged answer comes again (DUP), before the
	// answer to a request sent after connecting.
	c2, code, _ := rawDial(t, addr, connSpec{version: 4, id: id, user: id, pass: secret})
	if code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	c2.pid = 100
	c2.publish(t, 0x32, devices.RequestTopic(id), nil, []byte(`{"id":"second","op":"settings_get"}`))
	for {
		hdr, body, err := mqttwire.ReadPacket(c2.c)
		if err != nil {
			t.Fatalf("after reconnecting: %v", err)
		}
		if hdr>>4 != 3 {
			continue
		}
		if strings.Contains(string(body), `"id":"second"`) {
			t.Fatal("the unacknowledged answer to the first request was not redelivered")
		}
		if strings.Contains(string(body), `"id":"first"`) {
			if hdr&0x08 == 0 {
				t.Errorf("redelivered answer without DUP: %#x", hdr)
			}
			return
		}
	}
}
