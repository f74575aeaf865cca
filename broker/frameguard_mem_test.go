package broker

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// countingConn counts the bytes read from the socket, below the guard.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// allowHook lets every client in (mochi's auth.AllowHook pulls in a module we do not use).
type allowHook struct{ mqtt.HookBase }

func (h *allowHook) ID() string { return "allow" }
func (h *allowHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (h *allowHook) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

// TestGuardHugeConnectsBoundMemory: concurrent unauthenticated clients each declare a 256 MiB
// CONNECT (the largest remaining length MQTT can express) and stream 32 MiB of it into a real
// mochi server behind our listener and guard. Each connection is closed by the server after
// it read at most a few KiB, and the process heap does not grow by anything near what was
// declared or sent. Without the guard mochi allocates the declared length per connection.
func TestGuardHugeConnectsBoundMemory(t *testing.T) {
	const (
		conns    = 6
		declared = 256<<20 - 1
		stream   = 32 << 20
		readMax  = 8 << 10  // "a few KiB" the server may read before it closes
		heapMax  = 16 << 20 // generous: one declared CONNECT alone would be 256 MiB
	)
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler), SysTopicResendInterval: 0})
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var counted []*countingConn
	var rejected atomic.Int64
	guard := newGuard(4096, 256*1024, func(reason string) {
		if reason == "too_large" {
			rejected.Add(1)
		}
	})
	l := &listener{id: "t", proto: "tcp", ln: ln, connectTimeout: defaultConnectTimeout, guard: func(c net.Conn) net.Conn {
		cc := &countingConn{Conn: c}
		mu.Lock()
		counted = append(counted, cc)
		mu.Unlock()
		return guard(cc)
	}}
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeServer(srv) })

	var before, after, sample runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	header := append([]byte{0x10}, vbi(declared)...)
	chunk := make([]byte, 64<<10)
	var wg sync.WaitGroup
	sent := make([]int, conns)
	closed := make([]error, conns)
	for i := range conns {
		wg.Go(func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				closed[i] = err
				return
			}
			defer c.Close()
			// A guard against hanging forever if the server never closes; not a time limit
			// under test: a deadline error fails the test as "not closed".
			_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
			if _, err := c.Write(header); err != nil {
				closed[i] = err
				return
			}
			for sent[i] < stream {
				n, err := c.Write(chunk)
				sent[i] += n
				if err != nil {
					break
				}
			}
			_, closed[i] = c.Read(make([]byte, 1))
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	peak := before.HeapInuse
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(5 * time.Millisecond):
		}
		runtime.ReadMemStats(&sample)
		peak = max(peak, sample.HeapInuse)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)

	for i, err := range closed {
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection %d not closed by the server: %v (sent %d bytes)", i, err, sent[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(counted) != conns {
		t.Fatalf("server saw %d connections, want %d", len(counted), conns)
	}
	for i, c := range counted {
		if n := c.n.Load(); n > readMax {
			t.Errorf("server read %d bytes from connection %d before closing it, want <= %d", n, i, readMax)
		}
	}
	if got := rejected.Load(); got != conns {
		t.Errorf("%d connections rejected as too_large, want %d", got, conns)
	}
	grow := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use: before %d KiB, peak %d KiB, after %d KiB; allocated meanwhile %d KiB",
		before.HeapInuse>>10, peak>>10, after.HeapInuse>>10, (after.TotalAlloc-before.TotalAlloc)>>10)
	if grow > heapMax {
		t.Errorf("heap grew by %d bytes, want <= %d", grow, heapMax)
	}
	if d := int64(peak) - int64(before.HeapInuse); d > heapMax {
		t.Errorf("heap peaked %d bytes above the start, want <= %d", d, heapMax)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > heapMax {
		t.Errorf("%d bytes allocated while serving, want <= %d", d, heapMax)
	}
}
