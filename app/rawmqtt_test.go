package app_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/devicehub/devicehub/internal/mqttwire"
)

// Raw MQTT for tests that must see exact packets (reason codes, CONNACK properties, what
// comes or does not come before a probe), which paho hides.

// rawHangGuard bounds every blocking read so a broken server fails the test instead of
// hanging it; it is not a time limit under test.
const rawHangGuard = 15 * time.Second

type rawWill struct {
	topic   string
	payload string
	qos     byte
	retain  bool
}

type connSpec struct {
	version    byte // 4 (3.1.1) or 5
	id         string
	user, pass string
	clean      bool
	will       *rawWill
	props      []byte // v5 CONNECT properties (without their length)
}

// rawClient is one raw MQTT connection.
type rawClient struct {
	c       net.Conn
	version byte
	pid     uint16
}

func (rc connSpec) frame() []byte {
	flags := byte(0)
	if rc.user != "" {
		flags |= 0x80
	}
	if rc.pass != "" {
		flags |= 0x40
	}
	if rc.clean {
		flags |= 0x02
	}
	parts := [][]byte{mqttwire.Str("MQTT"), {rc.version, 0, 0, 60}}
	if rc.version == 5 {
		parts = append(parts, mqttwire.Props(rc.props))
	}
	parts = append(parts, mqttwire.Str(rc.id))
	if w := rc.will; w != nil {
		flags |= 0x04 | w.qos<<3
		if w.retain {
			flags |= 0x20
		}
		if rc.version == 5 {
			parts = append(parts, mqttwire.Props())
		}
		parts = append(parts, mqttwire.Str(w.topic), mqttwire.Str(w.payload))
	}
	parts[1][1] = flags
	if rc.user != "" {
		parts = append(parts, mqttwire.Str(rc.user))
	}
	if rc.pass != "" {
		parts = append(parts, mqttwire.Str(rc.pass))
	}
	return mqttwire.Frame(0x10, parts...)
}

// rawDial connects and returns the connection with the CONNACK's reason code (3.1.1: return
// code) and, for v5, the CONNACK's properties.
func rawDial(t *testing.T, addr string, rc connSpec) (*rawClient, byte, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(rawHangGuard))
	if _, err := c.Write(rc.frame()); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	hdr, body, err := mqttwire.ReadPacket(c)
	if err != nil || hdr != 0x20 || len(body) < 2 {
		t.Fatalf("CONNACK: hdr %#x body % x err %v", hdr, body, err)
	}
	var props []byte
	if rc.version == 5 && len(body) > 2 {
		props = body[2:]
	}
	return &rawClient{c: c, version: rc.version}, body[1], props
}

// rawDevice connects as a device (client ID = username = device ID) and requires success.
func rawDevice(t *testing.T, addr string, version byte, id, secret string, clean bool) *rawClient {
	t.Helper()
	c, code, _ := rawDial(t, addr, connSpec{version: version, id: id, user: id, pass: secret, clean: clean})
	if code != 0 {
		t.Fatalf("CONNACK %#x for %s", code, id)
	}
	return c
}

func (c *rawClient) nextPID() uint16 {
	c.pid++
	if c.pid == 0 {
		c.pid = 1
	}
	return c.pid
}

// publish sends a PUBLISH (hdr carries the QoS and flags: 0x30 | qos<<1 | retain) and returns
// its packet ID (0 at QoS 0). props are v5 properties without their length.
func (c *rawClient) publish(t *testing.T, hdr byte, topic string, props []byte, payload []byte) uint16 {
	t.Helper()
	parts := [][]byte{mqttwire.Str(topic)}
	var pid uint16
	if (hdr>>1)&3 > 0 {
		pid = c.nextPID()
		parts = append(parts, []byte{byte(pid >> 8), byte(pid)})
	}
	if c.version == 5 {
		parts = append(parts, mqttwire.Props(props))
	}
	parts = append(parts, payload)
	if _, err := c.c.Write(mqttwire.Frame(hdr, parts...)); err != nil {
		t.Fatalf("write PUBLISH: %v", err)
	}
	return pid
}

// subscribe sends a SUBSCRIBE of one filter at QoS 1 and returns the SUBACK's code.
func (c *rawClient) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	pid := c.nextPID()
	parts := [][]byte{{byte(pid >> 8), byte(pid)}}
	if c.version == 5 {
		parts = append(parts, mqttwire.Props())
	}
	parts = append(parts, mqttwire.Str(filter), []byte{1})
	if _, err := c.c.Write(mqttwire.Frame(0x82, parts...)); err != nil {
		t.Fatalf("write SUBSCRIBE: %v", err)
	}
	for {
		hdr, body := c.read(t)
		if hdr == 0x90 && len(body) >= 3 && uint16(body[0])<<8|uint16(body[1]) == pid {
			return body[len(body)-1]
		}
		t.Logf("before SUBACK: %#x (%d bytes)", hdr, len(body))
	}
}

// read reads the next packet, acknowledging QoS 1 publishes so the server keeps sending.
func (c *rawClient) read(t *testing.T) (byte, []byte) {
	t.Helper()
	hdr, body, err := mqttwire.ReadPacket(c.c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if hdr>>4 == 3 && (hdr>>1)&3 == 1 {
		n := 2 + (int(body[0])<<8 | int(body[1]))
		if len(body) >= n+2 {
			_, _ = c.c.Write([]byte{0x40, 2, body[n], body[n+1]})
		}
	}
	return hdr, body
}

// until reads packets until match returns true for one, returning it.
func (c *rawClient) until(t *testing.T, what string, match func(hdr byte, body []byte) bool) (byte, []byte) {
	t.Helper()
	for {
		hdr, body, err := mqttwire.ReadPacket(c.c)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if hdr>>4 == 3 && (hdr>>1)&3 == 1 {
			n := 2 + (int(body[0])<<8 | int(body[1]))
			if len(body) >= n+2 {
				_, _ = c.c.Write([]byte{0x40, 2, body[n], body[n+1]})
			}
		}
		if match(hdr, body) {
			return hdr, body
		}
	}
}

// puback waits for the PUBACK of pid and returns its reason code (0 when it has none).
func (c *rawClient) puback(t *testing.T, pid uint16) byte {
	t.Helper()
	_, body := c.until(t, "PUBACK", func(hdr byte, body []byte) bool {
		if hdr>>4 == 5 || hdr>>4 == 6 || hdr>>4 == 7 {
			t.Fatalf("got %#x % x, want a PUBACK", hdr, body)
		}
		return hdr>>4 == 4 && len(body) >= 2 && uint16(body[0])<<8|uint16(body[1]) == pid
	})
	if len(body) == 2 {
		return 0
	}
	return body[2]
}

// closed reads until the server closes the connection and returns the DISCONNECT reason
// code it sent first (-1 if none); any PUBACK, PUBREC or CONNACK before it fails the test.
func (c *rawClient) closed(t *testing.T) int {
	t.Helper()
	code := -1
	for {
		hdr, body, err := mqttwire.ReadPacket(c.c)
		if err == nil {
			switch hdr >> 4 {
			case 4, 5:
				t.Fatalf("got %#x % x, want the connection closed", hdr, body)
			case 14:
				code = 0
				if len(body) > 0 {
					code = int(body[0])
				}
			}
			continue
		}
		var ne net.Error
		if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server did not close the connection: %v", err)
		}
		return code
	}
}

// v5 properties
func propString(id byte, s string) []byte { return append([]byte{id}, mqttwire.Str(s)...) }
func propBinary(id byte, b []byte) []byte { return append([]byte{id}, mqttwire.Str(string(b))...) }
func propUint16(id byte, v uint16) []byte { return []byte{id, byte(v >> 8), byte(v)} }

// findProp returns the value bytes of property id in a v5 property block (length first).
func findProp(block []byte, id byte) ([]byte, bool) {
	n, k := 0, 0
	for mult := 1; k < len(block); k++ {
		n += int(block[k]&0x7f) * mult
		mult *= 128
		if block[k]&0x80 == 0 {
			k++
			break
		}
	}
	p := block[k:min(len(block), k+n)]
	for len(p) > 0 {
		pid := p[0]
		p = p[1:]
		var l int
		switch pid {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			l = 1
		case 0x13, 0x21, 0x22, 0x23: // two-byte integer
			l = 2
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			l = 4
		case 0x0B: // variable byte integer
			l = 1
			for l <= len(p) && p[l-1]&0x80 != 0 {
				l++
			}
		case 0x26: // string pair
			a := 2 + (int(p[0])<<8 | int(p[1]))
			l = a + 2 + (int(p[a])<<8 | int(p[a+1]))
		default: // string or binary data
			l = 2 + (int(p[0])<<8 | int(p[1]))
		}
		if l > len(p) {
			return nil, false
		}
		if pid == id {
			return p[:l], true
		}
		p = p[l:]
	}
	return nil, false
}

// parsePublish splits a PUBLISH body into its topic, v5 property block (with its length, as
// findProp takes it) and payload.
func parsePublish(version, hdr byte, body []byte) (topic string, props, payload []byte) {
	n := 2 + (int(body[0])<<8 | int(body[1]))
	topic = string(body[2:n])
	if (hdr>>1)&3 > 0 {
		n += 2
	}
	if version == 5 {
		l, k, mult := 0, 0, 1
		for ; k < 4; k++ {
			l += int(body[n+k]&0x7f) * mult
			mult *= 128
			if body[n+k]&0x80 == 0 {
				k++
				break
			}
		}
		props = body[n : n+k+l]
		n += k + l
	}
	return topic, props, body[n:]
}
