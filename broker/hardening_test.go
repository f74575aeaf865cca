package broker_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/internal/mqttwire"
)

// These tests run a whole hub (apptest) and talk raw MQTT to it over 127.0.0.1.

func anonymous(c *config.Config) { c.Broker.AllowAnonymous = true }

// hangGuard bounds every blocking read or write so a broken server fails the test instead
// of hanging it; it is not a time limit under test.
const hangGuard = time.Minute

func vbi(n int) []byte                       { return mqttwire.VBI(n) }
func mstr(s string) []byte                   { return mqttwire.Str(s) }
func frame(hdr byte, parts ...[]byte) []byte { return mqttwire.Frame(hdr, parts...) }
func props(p ...[]byte) []byte               { return mqttwire.Props(p...) }

func connectFrame(version byte, id string) []byte {
	if version == 5 {
		return frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 60}, props(), mstr(id))
	}
	return frame(0x10, mstr("MQTT"), []byte{4, 0x02, 0, 60}, mstr(id))
}

// readPacket reads one MQTT packet from c.
func readPacket(c net.Conn) (hdr byte, body []byte, err error) { return mqttwire.ReadPacket(c) }

// dialConnected opens a raw connection and completes a CONNECT/CONNACK at version.
func dialConnected(t *testing.T, h *apptest.Hub, version byte, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.MQTTAddr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(hangGuard))
	if _, err := c.Write(connectFrame(version, id)); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	hdr, body, err := readPacket(c)
	if err != nil || hdr != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK: hdr %#x body % x err %v", hdr, body, err)
	}
	return c
}

// assertClosed reads until the server closes c; anything the server sends first (a
// DISCONNECT, say) is skipped.
func assertClosed(t *testing.T, c net.Conn) {
	t.Helper()
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection not closed by the server: %v", err)
		}
		return // EOF or reset: closed
	}
}

// assertServing proves the broker is up: a fresh raw client subscribes and gets its own
// publish back.
func assertServing(t *testing.T, h *apptest.Hub) {
	t.Helper()
	c := dialConnected(t, h, 4, fmt.Sprintf("probe-%d", time.Now().UnixNano()))
	defer c.Close()
	if _, err := c.Write(frame(0x82, []byte{0, 1}, mstr("probe/t"), []byte{0})); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	if hdr, body, err := readPacket(c); err != nil || hdr != 0x90 || !bytes.Equal(body, []byte{0, 1, 0}) {
		t.Fatalf("SUBACK: hdr %#x body % x err %v", hdr, body, err)
	}
	if _, err := c.Write(frame(0x30, mstr("probe/t"), []byte("alive"))); err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	hdr, body, err := readPacket(c)
	if err != nil || hdr>>4 != 3 || !bytes.HasSuffix(body, []byte("alive")) {
		t.Fatalf("round trip: hdr %#x body %q err %v", hdr, body, err)
	}
}

func rejectedCount(t *testing.T, h *apptest.Hub, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.Metrics().FramesRejected.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestHardeningIssue501DoesNotCrashHub is upstream mochi issue #501 against a whole hub: a
// logged-in MQTT 5 client sends a SUBSCRIBE whose filter has no options byte. Without the
// frame validator mochi indexes out of range on the client's read goroutine and this test
// binary dies with "panic: runtime error: index out of range" (that crash is how it fails);
// with it, only that connection is closed and a well-behaved client still round-trips.
func TestHardeningIssue501DoesNotCrashHub(t *testing.T) {
	h := apptest.Start(t, anonymous)
	c := dialConnected(t, h, 5, "evil-501")
	if _, err := c.Write([]byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61}); err != nil {
		t.Fatalf("write: %v", err)
	}
	assertClosed(t, c)
	if got := rejectedCount(t, h, "malformed"); got != 1 {
		t.Errorf("frames rejected as malformed: %v, want 1", got)
	}

	got := make(chan string, 1)
	o := paho.NewClientOptions().AddBroker(h.MQTTURL()).SetClientID("good-client").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(hangGuard)
	cl := paho.NewClient(o)
	if tok := cl.Connect(); !tok.WaitTimeout(hangGuard) || tok.Error() != nil {
		t.Fatalf("well-behaved client cannot connect after #501: %v", tok.Error())
	}
	defer cl.Disconnect(0)
	if tok := cl.Subscribe("survivor/t", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(hangGuard) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if tok := cl.Publish("survivor/t", 1, false, "still here"); !tok.WaitTimeout(hangGuard) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m != "still here" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(hangGuard):
		t.Fatal("message not delivered")
	}
}

// TestHardeningMalformedPackets sends each hostile packet after a valid CONNECT: each one
// closes only its own connection and the hub keeps serving.
func TestHardeningMalformedPackets(t *testing.T) {
	h := apptest.Start(t, anonymous)
	deep := strings.Repeat("a/", 10000) + "a" // 10,001 levels, 20 KiB: within the size limit
	users := bytes.Repeat(append([]byte{0x26}, append(mstr("k"), mstr("v")...)...), 10000)
	cases := []struct {
		name    string
		version byte
		send    []byte
	}{
		{"issue 501 subscribe without options", 5, []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61}},
		{"v4 subscribe without options", 4, frame(0x82, []byte{0, 1}, mstr("a"))},
		{"invalid UTF-8 topic", 4, frame(0x30, mstr("bad\xff\xfe"), []byte("x"))},
		{"NUL in topic", 4, frame(0x30, mstr("a\x00b"), []byte("x"))},
		{"zero-length topic", 4, frame(0x30, mstr(""), []byte("x"))},
		{"zero-length topic v5 without alias", 5, frame(0x30, mstr(""), props(), []byte("x"))},
		{"wildcard in publish topic", 4, frame(0x30, mstr("a/+/c"), []byte("x"))},
		{"deeply nested filter", 4, frame(0x82, []byte{0, 1}, mstr(deep), []byte{0})},
		{"deeply nested topic", 5, frame(0x31, mstr(deep), props(), []byte("x"))},
		{"10000 user properties in publish", 5, frame(0x30, mstr("a"), props(users), []byte("x"))},
		{"property length past the end", 5, frame(0x30, mstr("a"), []byte{0x7f}, []byte("x"))},
		{"unsubscribe without filters", 5, frame(0xa2, []byte{0, 1}, props())},
		{"qos 3 publish", 4, frame(0x36, mstr("a"), []byte{0, 1})},
		{"second connect", 4, connectFrame(4, "again")},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialConnected(t, h, tc.version, fmt.Sprintf("evil-%d", i))
			if _, err := c.Write(tc.send); err != nil {
				t.Fatalf("write: %v", err)
			}
			assertClosed(t, c)
			assertServing(t, h)
		})
	}
	if got := rejectedCount(t, h, "malformed"); got != float64(len(cases)) {
		t.Errorf("frames rejected as malformed: %v, want %d", got, len(cases))
	}

	// 10,000 user properties in a CONNECT: far over the pre-authentication limit.
	c, err := net.Dial("tcp", h.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hangGuard))
	_, _ = c.Write(frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 60}, props(users), mstr("x")))
	assertClosed(t, c)
	if got := rejectedCount(t, h, "too_large"); got != 1 {
		t.Errorf("frames rejected as too large: %v, want 1", got)
	}
	assertServing(t, h)
}

// TestHardeningMaxPacketSize: after an anonymous CONNECT, a PUBLISH just under
// broker.max_packet_size round-trips; one just over it closes the connection.
func TestHardeningMaxPacketSize(t *testing.T) {
	const limit = 16 * 1024
	h := apptest.Start(t, func(c *config.Config) {
		c.Broker.AllowAnonymous = true
		c.Broker.MaxPacketSize = limit
	})
	c := dialConnected(t, h, 4, "sizer")
	if _, err := c.Write(frame(0x82, []byte{0, 1}, mstr("size/t"), []byte{0})); err != nil {
		t.Fatal(err)
	}
	if hdr, _, err := readPacket(c); err != nil || hdr != 0x90 {
		t.Fatalf("SUBACK: %#x %v", hdr, err)
	}
	// 1 header byte + 2 length bytes + 2+6 topic bytes + payload = limit
	under := frame(0x30, mstr("size/t"), bytes.Repeat([]byte("u"), limit-1-2-8))
	if len(under) != limit {
		t.Fatalf("under-limit frame is %d bytes", len(under))
	}
	if _, err := c.Write(under); err != nil {
		t.Fatal(err)
	}
	hdr, body, err := readPacket(c)
	if err != nil || hdr>>4 != 3 || len(body) != limit-3 {
		t.Fatalf("under-limit round trip: hdr %#x, %d bytes, err %v", hdr, len(body), err)
	}
	over := frame(0x30, mstr("size/t"), bytes.Repeat([]byte("o"), limit))
	if _, err := c.Write(over); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, c)
	if got := rejectedCount(t, h, "too_large"); got != 1 {
		t.Errorf("frames rejected as too large: %v, want 1", got)
	}
	assertServing(t, h)
}

// TestHardeningHugeConnectsHub: unauthenticated clients each declare a 256 MiB CONNECT and
// stream 32 MiB of it at a whole hub at once. Each is closed by the server, and the heap of
// the hub process (this test binary) stays within a generous bound. The bytes the server
// reads per connection are counted in TestGuardHugeConnectsBoundMemory.
func TestHardeningHugeConnectsHub(t *testing.T) {
	const (
		conns   = 4
		stream  = 32 << 20
		heapMax = 16 << 20
	)
	h := apptest.Start(t, anonymous)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	header := append([]byte{0x10}, vbi(256<<20-1)...)
	chunk := make([]byte, 64<<10)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := net.Dial("tcp", h.MQTTAddr())
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(hangGuard))
			_, err = c.Write(header)
			for sent := 0; err == nil && sent < stream; {
				var n int
				n, err = c.Write(chunk)
				sent += n
			}
			_, err = c.Read(make([]byte, 1))
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				errs[i] = fmt.Errorf("not closed by the server: %v", err)
			}
		})
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	for i, err := range errs {
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
	if got := rejectedCount(t, h, "too_large"); got != conns {
		t.Errorf("frames rejected as too large: %v, want %d", got, conns)
	}
	grow := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use before %d KiB, after %d KiB; allocated meanwhile %d KiB",
		before.HeapInuse>>10, after.HeapInuse>>10, (after.TotalAlloc-before.TotalAlloc)>>10)
	if grow > heapMax {
		t.Errorf("heap grew by %d bytes, want <= %d", grow, heapMax)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > heapMax {
		t.Errorf("%d bytes allocated while serving, want <= %d", d, heapMax)
	}
	assertServing(t, h)
}
