package app_test

import (
	"testing"

	"github.com/devicehub/devicehub/devices"
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
	band, secret, bound := w.bindBand(t)
	bound.Close()
	noClientsConnected(t, w.h)
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
