package broker_test

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
)

// persistentConnect opens a raw connection that resumes (or starts) a persistent session.
// sessionPresent reports what the CONNACK said.
func persistentConnect(t *testing.T, h *apptest.Hub, version byte, id string) (c net.Conn, sessionPresent bool) {
	t.Helper()
	c, err := net.Dial("tcp", h.MQTTAddr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(hangGuard))
	var connect []byte
	if version == 5 {
		// Clean start off, session expiry one hour.
		connect = frame(0x10, mstr("MQTT"), []byte{5, 0x00, 0, 60}, props([]byte{0x11, 0, 0, 0x0e, 0x10}), mstr(id))
	} else {
		connect = frame(0x10, mstr("MQTT"), []byte{4, 0x00, 0, 60}, mstr(id))
	}
	if _, err := c.Write(connect); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	hdr, body, err := readPacket(c)
	if err != nil || hdr != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK: hdr %#x body % x err %v", hdr, body, err)
	}
	return c, body[0]&1 == 1
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write % x: %v", b[:1], err)
	}
}

func subscribeFrame(version byte, pid uint16, filter string) []byte {
	id := []byte{byte(pid >> 8), byte(pid)}
	if version == 5 {
		return frame(0x82, id, props(), mstr(filter), []byte{1})
	}
	return frame(0x82, id, mstr(filter), []byte{1})
}

// ackCodes reads the reason codes of a SUBACK/UNSUBACK body for packet pid.
func ackCodes(t *testing.T, version byte, body []byte, pid uint16) []byte {
	t.Helper()
	if len(body) < 2 || uint16(body[0])<<8|uint16(body[1]) != pid {
		t.Fatalf("ack for another packet ID: % x, want %d", body, pid)
	}
	body = body[2:]
	if version == 5 {
		if len(body) == 0 || body[0] >= 0x80 {
			t.Fatalf("ack properties: % x", body)
		}
		body = body[1+int(body[0]):]
	}
	return body
}

// publishID returns the packet ID of a QoS 1 PUBLISH body sent by the server.
func publishID(t *testing.T, body []byte) uint16 {
	t.Helper()
	if len(body) < 2 {
		t.Fatalf("short PUBLISH % x", body)
	}
	n := int(body[0])<<8 | int(body[1])
	if len(body) < 2+n+2 {
		t.Fatalf("short PUBLISH % x", body)
	}
	return uint16(body[2+n])<<8 | uint16(body[3+n])
}

// TestClientPacketIDsIndependentOfServer resumes a persistent session holding three queued
// QoS 1 messages (packet IDs chosen by the server) and reuses exactly those IDs for the
// client's own SUBSCRIBE, UNSUBSCRIBE and PUBLISH, as client libraries do after connecting.
// MQTT keeps the two sides' IDs apart; mochi alone refuses the SUBSCRIBE (0x91) and forgets
// the queued message whose ID the PUBLISH reused.
func TestClientPacketIDsIndependentOfServer(t *testing.T) {
	h := apptest.Start(t, anonymous)
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			id := fmt.Sprintf("pid-v%d", version)
			topic := fmt.Sprintf("pid/v%d/t", version)

			sub, _ := persistentConnect(t, h, version, id)
			write(t, sub, subscribeFrame(version, 1, topic))
			if hdr, body, err := readPacket(sub); err != nil || hdr != 0x90 || ackCodes(t, version, body, 1)[0] != 1 {
				t.Fatalf("first SUBACK: hdr %#x body % x err %v", hdr, body, err)
			}
			sub.Close() // the session and its subscription stay

			pub := dialConnected(t, h, 4, id+"-pub")
			for i := 1; i <= 3; i++ {
				write(t, pub, frame(0x32, mstr(topic), []byte{0, byte(i)}, []byte(fmt.Sprintf("m%d", i))))
				if hdr, body, err := readPacket(pub); err != nil || hdr != 0x40 || body[1] != byte(i) {
					t.Fatalf("PUBACK %d: hdr %#x body % x err %v", i, hdr, body, err)
				}
			}

			// mochi acknowledges a publish before it fans it out; the publisher's next packet
			// is read only after that, so a PINGRESP means all three are in the session.
			ping(t, pub)

			// The resumed session gets the three messages first, unacknowledged.
			resume := func() (net.Conn, []uint16) {
				c, present := persistentConnect(t, h, version, id)
				if !present {
					t.Fatal("session not present on resume")
				}
				var ids []uint16
				for len(ids) < 3 {
					hdr, body, err := readPacket(c)
					if err != nil || hdr&0xf0 != 0x30 {
						t.Fatalf("queued message %d (have %v): hdr %#x err %v", len(ids)+1, ids, hdr, err)
					}
					ids = append(ids, publishID(t, body))
				}
				return c, ids
			}
			c, ids := resume()

			write(t, c, subscribeFrame(version, ids[0], topic))
			hdr, body, err := readPacket(c)
			if err != nil || hdr != 0x90 {
				t.Fatalf("SUBACK: hdr %#x err %v", hdr, err)
			}
			if code := ackCodes(t, version, body, ids[0])[0]; code != 1 {
				t.Fatalf("SUBSCRIBE reusing the ID of a queued message: code %#x, want 0x01 (granted)", code)
			}
			if version == 5 {
				write(t, c, frame(0xa2, []byte{byte(ids[1] >> 8), byte(ids[1])}, props(), mstr("pid/none")))
				hdr, body, err := readPacket(c)
				if err != nil || hdr != 0xb0 {
					t.Fatalf("UNSUBACK: hdr %#x err %v", hdr, err)
				}
				if code := ackCodes(t, version, body, ids[1])[0]; code != 0x11 && code != 0x00 {
					t.Fatalf("UNSUBSCRIBE reusing the ID of a queued message: code %#x, want 0x11 (no subscription)", code)
				}
			}
			echo := frame(0x32, mstr(topic+"/echo"), []byte{byte(ids[2] >> 8), byte(ids[2])}, []byte("x"))
			if version == 5 {
				echo = frame(0x32, mstr(topic+"/echo"), []byte{byte(ids[2] >> 8), byte(ids[2])}, props(), []byte("x"))
			}
			write(t, c, echo)
			if hdr, body, err := readPacket(c); err != nil || hdr != 0x40 || publishAckID(body) != ids[2] {
				t.Fatalf("PUBACK for the client's publish: hdr %#x body % x err %v", hdr, body, err)
			}
			ping(t, c) // a takeover copies the session at once, maybe before this connection's end is processed
			c.Close()

			// None of the three was forgotten: they all come again, and once acknowledged
			// they are gone (the next resume starts with our SUBACK, nothing before it).
			c, again := resume()
			slices.Sort(again)
			slices.Sort(ids)
			if !slices.Equal(again, ids) {
				t.Fatalf("resent %v, want %v", again, ids)
			}
			for _, pid := range again {
				write(t, c, frame(0x40, []byte{byte(pid >> 8), byte(pid)}))
			}
			ping(t, c) // the PUBACKs are processed before the session is taken over
			c.Close()
			c, _ = persistentConnect(t, h, version, id)
			write(t, c, subscribeFrame(version, 7, topic))
			if hdr, body, err := readPacket(c); err != nil || hdr != 0x90 {
				t.Fatalf("after acknowledging everything the first packet is % x (hdr %#x, err %v), want the SUBACK", body, hdr, err)
			}
		})
	}
}

func publishAckID(body []byte) uint16 {
	if len(body) < 2 {
		return 0
	}
	return uint16(body[0])<<8 | uint16(body[1])
}

// ping waits for a PINGRESP: the server has processed everything c sent before it.
func ping(t *testing.T, c net.Conn) {
	t.Helper()
	write(t, c, []byte{0xc0, 0})
	if hdr, _, err := readPacket(c); err != nil || hdr != 0xd0 {
		t.Fatalf("PINGRESP: hdr %#x err %v", hdr, err)
	}
}

// TestPubackCarriesNoEcho: a v5 QoS 1 publish with a user property is acknowledged with
// success and nothing of the publish echoed back (mochi would copy its properties into the
// PUBACK and send 0x01, which is no PUBACK reason code).
func TestPubackCarriesNoEcho(t *testing.T) {
	h := apptest.Start(t, anonymous)
	c := dialConnected(t, h, 5, "puback-echo")
	user := append(append([]byte{0x26}, mstr("trace")...), mstr("abc")...)
	write(t, c, frame(0x32, mstr("echo/t"), []byte{0, 9}, props(user), []byte("x")))
	hdr, body, err := readPacket(c)
	if err != nil || hdr != 0x40 {
		t.Fatalf("PUBACK: hdr %#x err %v", hdr, err)
	}
	// Either the short form (success) or packet ID, 0x00 and no properties.
	if !slices.Equal(body, []byte{0, 9}) && !slices.Equal(body, []byte{0, 9, 0}) && !slices.Equal(body, []byte{0, 9, 0, 0}) {
		t.Fatalf("PUBACK body % x, want 00 09 (success, no properties)", body)
	}
}
