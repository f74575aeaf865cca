package app_test

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// TestQoS2Refused: the hub offers QoS 0 and 1. v5 CONNACKs say Maximum QoS 1; a QoS 2
// PUBLISH is never answered with a PUBACK (which a QoS 2 sender does not expect: mochi
// lowered it to QoS 1 and acknowledged it, and so did the telemetry acker): a v5 client gets
// DISCONNECT 0x9B (QoS not supported), a 3.1.1 client is disconnected. A v5 will at QoS 2 is
// refused with CONNACK 0x9B; a 3.1.1 one is accepted (3.1.1 has no code for it).
func TestQoS2Refused(t *testing.T) {
	w := newWorld(t)
	band, secret, bound := w.bindBand(t)
	bound.Close()
	addr := w.h.MQTTAddr()
	telemetry := devices.TelemetryTopic(band.DeviceID, "steps")
	sample := []byte(`{"seq":1,"ts":"2026-01-01T00:00:00Z","count":5}`)
	for _, tc := range []struct {
		name    string
		version byte
		topic   string
		payload []byte
	}{
		{"v5 telemetry", 5, telemetry, sample},
		{"v5 request", 5, devices.RequestTopic(band.DeviceID), []byte(`{"id":"q2","op":"bind_code"}`)},
		{"3.1.1 telemetry", 4, telemetry, sample},
		{"3.1.1 request", 4, devices.RequestTopic(band.DeviceID), []byte(`{"id":"q2","op":"bind_code"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noClientsConnected(t, w.h)
			c, code, props := rawDial(t, addr, connSpec{version: tc.version, id: band.DeviceID, user: band.DeviceID, pass: secret, clean: true})
			if code != 0 {
				t.Fatalf("CONNACK %#x", code)
			}
			if tc.version == 5 {
				if v, ok := findProp(props, 0x24); !ok || v[0] != 1 {
					t.Fatalf("CONNACK properties % x lack Maximum QoS 1", props)
				}
			}
			c.publish(t, 0x34, tc.topic, nil, tc.payload) // QoS 2
			got := c.closed(t)                            // fails on a PUBACK or PUBREC
			if tc.version == 5 && got != 0x9B {
				t.Fatalf("DISCONNECT %#x, want 0x9b", got)
			}
		})
	}
	t.Run("v5 will at QoS 2", func(t *testing.T) {
		noClientsConnected(t, w.h)
		c, code, _ := rawDial(t, addr, connSpec{version: 5, id: band.DeviceID, user: band.DeviceID, pass: secret, clean: true,
			will: &rawWill{topic: telemetry, payload: string(sample), qos: 2}})
		c.c.Close()
		if code != 0x9B {
			t.Fatalf("CONNACK %#x, want 0x9b", code)
		}
	})
	t.Run("3.1.1 will at QoS 2", func(t *testing.T) {
		noClientsConnected(t, w.h)
		c, code, _ := rawDial(t, addr, connSpec{version: 4, id: band.DeviceID, user: band.DeviceID, pass: secret, clean: true,
			will: &rawWill{topic: telemetry, payload: string(sample), qos: 2}})
		c.c.Close()
		if code != 0 {
			t.Fatalf("CONNACK %#x, want 0", code)
		}
	})
}

// TestTopicAliasesOff: the hub takes no topic aliases. mochi accepted up to 65,535 of them
// but checked the ACL on the empty topic of an aliased publish before resolving the alias, so
// every publish by alias was refused (PUBACK 0x87, invalid_topic). v5 CONNACKs carry no
// Topic Alias Maximum (so: 0), and a publish with an alias gets DISCONNECT 0x94 (topic alias
// invalid) [MQTT-3.3.2-9], a defined answer instead of a refusal that looks like an ACL one.
func TestTopicAliasesOff(t *testing.T) {
	w := newWorld(t)
	band, secret := w.offlineBand(t)
	c, code, props := rawDial(t, w.h.MQTTAddr(), connSpec{version: 5, id: band.DeviceID, user: band.DeviceID, pass: secret, clean: true})
	if code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	if v, ok := findProp(props, 0x22); ok {
		t.Fatalf("CONNACK advertises Topic Alias Maximum % x", v)
	}
	for _, tc := range []struct {
		name  string
		topic string
	}{{"alias with its topic", devices.RequestTopic(band.DeviceID)}, {"alias alone", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			if c == nil {
				noClientsConnected(t, w.h)
				c = rawDevice(t, w.h.MQTTAddr(), 5, band.DeviceID, secret, true)
			}
			c.publish(t, 0x32, tc.topic, propUint16(0x23, 1), []byte(`{"id":"alias","op":"settings_get"}`))
			if got := c.closed(t); got != 0x94 {
				t.Fatalf("DISCONNECT %#x, want 0x94", got)
			}
			c = nil
		})
	}
}

// TestMQTT5ReasonCodes: what an MQTT 5 device sees of each refusal: CONNACK 0x86 for a wrong
// secret (3.1.1: CONNACK 5), SUBACK 0x87 for a filter outside its topics (3.1.1: 0x80),
// PUBACK 0x87 for a QoS 1 publish to another device's topic (3.1.1: disconnected).
func TestMQTT5ReasonCodes(t *testing.T) {
	w := newWorld(t)
	addr := w.h.MQTTAddr()
	phone, secret := w.annaPhone.DeviceID, w.annaPhone.Secret
	for _, tc := range []struct {
		version byte
		want    byte
	}{{5, 0x86}, {4, 5}} {
		_, code, _ := rawDial(t, addr, connSpec{version: tc.version, id: phone, user: phone, pass: "wrong", clean: true})
		if code != tc.want {
			t.Errorf("v%d wrong secret: CONNACK %#x, want %#x", tc.version, code, tc.want)
		}
	}
	victim := devices.CommandTopic(w.borisPhone.DeviceID)
	for _, tc := range []struct {
		version byte
		suback  byte
	}{{5, 0x87}, {4, 0x80}} {
		noClientsConnected(t, w.h)
		c := rawDevice(t, addr, tc.version, phone, secret, true)
		for _, f := range []string{"#", "devices/+/telemetry/#", victim} {
			if got := c.subscribe(t, f); got != tc.suback {
				t.Errorf("v%d SUBACK for %s: %#x, want %#x", tc.version, f, got, tc.suback)
			}
		}
		pid := c.publish(t, 0x32, victim, nil, []byte(`{"type":"wipe"}`))
		if tc.version == 5 {
			if got := c.puback(t, pid); got != 0x87 {
				t.Errorf("v5 PUBACK for a publish to another device: %#x, want 0x87", got)
			}
			c.c.Close()
		} else {
			c.closed(t)
		}
	}
}

// TestMQTT5ResponseTopic: a v5 request's Response Topic and Correlation Data are honoured
// when the topic is under the device's own devices/{self}/; any other topic, also one the
// device may subscribe to such as its account's accounts/{account}/…, is ignored and the
// answer goes to devices/{self}/res (a controller must not make the hub publish to every
// controller of its account, or anywhere else).
func TestMQTT5ResponseTopic(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	addr := w.h.MQTTAddr()
	tablet, err := w.anna.RegisterDevice(ctx, "tablet", "Anna's tablet", "")
	if err != nil {
		t.Fatal(err)
	}
	phone := w.annaPhone.DeviceID
	watcher := rawDevice(t, addr, 5, tablet.DeviceID, tablet.Secret, true)
	for _, f := range []string{"accounts/" + w.annaID + "/#", devices.ResponseTopic(tablet.DeviceID)} {
		if got := watcher.subscribe(t, f); got != 1 {
			t.Fatalf("tablet SUBACK for %s: %#x", f, got)
		}
	}
	c := rawDevice(t, addr, 5, phone, w.annaPhone.Secret, true)
	if got := c.subscribe(t, devices.DeviceFilter(phone)); got != 1 {
		t.Fatalf("SUBACK %#x", got)
	}
	for i, tc := range []struct{ asked, want string }{
		{"devices/" + phone + "/replies/a", "devices/" + phone + "/replies/a"},
		{"accounts/" + w.annaID + "/sync/x", devices.ResponseTopic(phone)},
		{"accounts/" + w.annaID + "/x", devices.ResponseTopic(phone)},
		{devices.ResponseTopic(w.borisPhone.DeviceID), devices.ResponseTopic(phone)},
		{"elsewhere/x", devices.ResponseTopic(phone)},
	} {
		corr := []byte{0xde, 0xad, byte(i)}
		id := fmt.Sprintf("rt-%d", i)
		props := append(propString(0x08, tc.asked), propBinary(0x09, corr)...)
		c.publish(t, 0x32, devices.RequestTopic(phone), props, []byte(`{"id":"`+id+`","op":"settings_get"}`))
		_, body := c.until(t, "the response to "+id, func(hdr byte, body []byte) bool {
			return hdr>>4 == 3 && bytes.Contains(body, []byte(`"`+id+`"`))
		})
		topic, p, _ := parsePublish(5, 0x32, body)
		if topic != tc.want {
			t.Errorf("response topic %q asked: answered on %q, want %q", tc.asked, topic, tc.want)
		}
		if v, ok := findProp(p, 0x09); !ok || !bytes.Equal(v[2:], corr) {
			t.Errorf("response to %s: correlation data % x, want % x", id, v, corr)
		}
	}
	// The tablet's probe: its own request's answer is the first thing it gets.
	watcher.publish(t, 0x30, devices.RequestTopic(tablet.DeviceID), nil, []byte(`{"id":"probe","op":"settings_get"}`))
	watcher.until(t, "the tablet's probe", func(hdr byte, body []byte) bool {
		if hdr>>4 != 3 {
			return false
		}
		if topic, _, _ := parsePublish(5, hdr, body); strings.HasPrefix(topic, "accounts/") {
			t.Fatalf("the tablet received a response on %s", topic)
		}
		return true
	})
}

// TestUnbindDropSendsDisconnectOnlyToV5: when the owner unbinds a band, the hub ends its
// connection. An MQTT 5 band is told why (DISCONNECT 0x87, not authorized); MQTT 3.1.1 has no
// DISCONNECT from the server [MQTT-3.14], so a 3.1.1 band's connection is just closed (mochi
// sent the v5 packet to both).
func TestUnbindDropSendsDisconnectOnlyToV5(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version byte
		want    int // the DISCONNECT reason code, -1: none
	}{{"3.1.1", 4, -1}, {"v5", 5, 0x87}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			band, secret := w.offlineBand(t)
			c := rawDevice(t, w.h.MQTTAddr(), tc.version, band.DeviceID, secret, true)
			if err := w.anna.Unbind(testCtx(t), band.DeviceID, w.annaPassword); err != nil {
				t.Fatal(err)
			}
			if got := c.closed(t); got != tc.want {
				t.Fatalf("DISCONNECT reason %d before the close, want %d", got, tc.want)
			}
		})
	}
}

// TestShutdownSendsDisconnectOnlyToV5: a hub shutting down ends every connection. An MQTT 5
// client is told why (DISCONNECT 0x8B, server shutting down); a 3.1.1 client's connection is
// just closed, as 3.1.1 has no DISCONNECT from the server [MQTT-3.14].
func TestShutdownSendsDisconnectOnlyToV5(t *testing.T) {
	w := newWorld(t)
	band, secret := w.offlineBand(t)
	v4 := rawDevice(t, w.h.MQTTAddr(), 4, band.DeviceID, secret, true)
	v5 := rawDevice(t, w.h.MQTTAddr(), 5, w.annaPhone.DeviceID, w.annaPhone.Secret, true)
	w.h.Stop(t)
	if got := v4.closed(t); got != -1 {
		t.Fatalf("3.1.1 client got DISCONNECT reason %d before the close, want none", got)
	}
	if got := v5.closed(t); got != 0x8B {
		t.Fatalf("v5 client got DISCONNECT reason %d, want 0x8b", got)
	}
}

// TestSessionTakeoverSendsDisconnectOnlyToV5: a device that connects again while its old
// connection is still open takes its session over. The old connection of an MQTT 5 client is
// told why (DISCONNECT 0x8E, session taken over); a 3.1.1 client's is just closed, as 3.1.1
// has no DISCONNECT from the server [MQTT-3.14]. Either way the new connection works.
func TestSessionTakeoverSendsDisconnectOnlyToV5(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version byte
		want    int // the DISCONNECT reason code, -1: none
	}{{"3.1.1", 4, -1}, {"v5", 5, 0x8E}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			band, secret := w.offlineBand(t)
			old := rawDevice(t, w.h.MQTTAddr(), tc.version, band.DeviceID, secret, true)
			next := rawDevice(t, w.h.MQTTAddr(), tc.version, band.DeviceID, secret, true)
			if got := old.closed(t); got != tc.want {
				t.Fatalf("old connection got DISCONNECT reason %d before the close, want %d", got, tc.want)
			}
			if code := next.subscribe(t, devices.CommandTopic(band.DeviceID)); code != 1 {
				t.Fatalf("the new connection's SUBACK %#x, want QoS 1 granted", code)
			}
		})
	}
}

// TestRefusedPublishSendsDisconnectOnlyToV5: a QoS 1 publish to another device's topic is
// refused. MQTT 5 can say so in the PUBACK (0x87) and keeps the connection; MQTT 3.1.1 has no
// way to refuse one publish, so its connection is closed [MQTT-3.3.5-2], without the
// DISCONNECT that 3.1.1 does not allow a server to send [MQTT-3.14]. Nothing is stored.
func TestRefusedPublishSendsDisconnectOnlyToV5(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version byte
	}{{"3.1.1", 4}, {"v5", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			band, secret := w.offlineBand(t)
			other, _ := w.offlineBand(t)
			c := rawDevice(t, w.h.MQTTAddr(), tc.version, band.DeviceID, secret, true)
			pid := c.publish(t, 0x32, devices.TelemetryTopic(other.DeviceID, devices.StreamSteps), nil, stepsSample(1))
			if tc.version == 5 {
				if code := c.puback(t, pid); code != 0x87 {
					t.Fatalf("PUBACK %#x, want 0x87 (not authorized)", code)
				}
				if code := c.subscribe(t, devices.CommandTopic(band.DeviceID)); code != 1 {
					t.Fatalf("after the refusal the connection's SUBACK %#x, want QoS 1 granted", code)
				}
			} else if got := c.closed(t); got != -1 {
				t.Fatalf("3.1.1 client got DISCONNECT reason %d before the close, want none", got)
			}
			for _, id := range []string{band.DeviceID, other.DeviceID} {
				var page hub.TelemetryPage
				q := url.Values{"stream": {devices.StreamSteps}}
				if err := w.anna.Do(testCtx(t), "GET", "/api/v1/devices/"+id+"/telemetry?"+q.Encode(), nil, &page); err != nil {
					t.Fatalf("read telemetry of %s: %v", id, err)
				}
				if len(page.Samples) != 0 {
					t.Fatalf("the refused sample was stored for %s: %+v", id, page.Samples)
				}
			}
		})
	}
}
