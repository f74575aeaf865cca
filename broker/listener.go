package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener serves MQTT over a net.Listener we opened ourselves, so that the OS-chosen port
// (":0" in tests) is known before Serve, TLS is ours to configure, and every connection passes
// through the frame guard before mochi's decoder sees a byte.
type listener struct {
	id             string
	proto          string
	ln             net.Listener
	guard          func(net.Conn) net.Conn
	connectTimeout time.Duration
	end            atomic.Bool
	log            *slog.Logger
	conns          *connTracker // nil: not tracked (tests that build a bare listener)
}

// connTracker knows the connections the listeners are serving, so the broker can end them
// and wait until mochi has returned from each before it closes the server. mochi's Close
// writes server state that a connection still being set up reads, and nothing in mochi
// orders the two (the race detector caught it in a test that stopped the hub right after a
// connection was accepted).
type connTracker struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	idle   chan struct{} // closed once closed is set and no connection is left
}

func newConnTracker() *connTracker {
	return &connTracker{conns: map[net.Conn]struct{}{}, idle: make(chan struct{})}
}

// enter registers a new connection; false once the broker is closing (drop the connection).
func (t *connTracker) enter(c net.Conn) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// leave is called when mochi has returned from the connection.
func (t *connTracker) leave(c net.Conn) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	if t.closed && len(t.conns) == 0 {
		close(t.idle)
	}
}

// closeAll refuses new connections, closes the open ones (after the caller disconnected the
// clients, so a DISCONNECT could be sent first) and waits, at most wait, until mochi has
// returned from every one.
func (t *connTracker) closeAll(wait time.Duration) bool {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		if len(t.conns) == 0 {
			close(t.idle)
		}
	}
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-t.idle:
		return true
	case <-timer.C:
		return false
	}
}

// defaultConnectTimeout is how long a new connection has to complete its TLS handshake and
// send its CONNECT. mochi sets no deadline before the CONNECT is read (it applies the keep
// alive only after), so silent or half-sent CONNECTs were held forever. The deadline is on
// the connection itself; mochi replaces it with the keep-alive one once it read the CONNECT.
const defaultConnectTimeout = 10 * time.Second

var _ listeners.Listener = (*listener)(nil)

func (l *listener) ID() string                  { return l.id }
func (l *listener) Address() string             { return l.ln.Addr().String() }
func (l *listener) Protocol() string            { return l.proto }
func (l *listener) Init(log *slog.Logger) error { l.log = log; return nil }

func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if !l.end.Load() && !errors.Is(err, net.ErrClosed) {
				l.log.Warn("mqtt listener stopped accepting", "listener", l.id, "error", err)
			}
			return
		}
		if l.end.Load() {
			conn.Close()
			return
		}
		if !l.conns.enter(conn) {
			conn.Close()
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(l.connectTimeout))
		go func() {
			defer l.conns.leave(conn)
			gc := l.guard(conn)
			defer finished(gc)
			if err := establish(l.id, gc); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("mqtt connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

func (l *listener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		closeClients(l.id)
	}
	_ = l.ln.Close()
}

// finished tells a guarded connection that mochi is done with it: mochi removes a clean
// session from its client table after its hooks saw the disconnect, by client ID, and a new
// connection of the same device must not be set up before that (see authHook.awaitPrevious).
func finished(c net.Conn) {
	if gc, ok := c.(*guardedConn); ok {
		gc.finish()
	}
}

// wsListener serves MQTT over WebSocket at /mqtt (subprotocol "mqtt").
type wsListener struct {
	id        string
	ln        net.Listener
	srv       *http.Server
	guard     func(net.Conn) net.Conn
	upgrader  websocket.Upgrader
	end       atomic.Bool
	log       *slog.Logger
	establish listeners.EstablishFn
	// connectTimeout bounds the wait for the CONNECT once upgraded (the HTTP server's
	// header timeout bounds the upgrade).
	connectTimeout time.Duration
	conns          *connTracker
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(id string, ln net.Listener, guard func(net.Conn) net.Conn, connectTimeout time.Duration, conns *connTracker) *wsListener {
	l := &wsListener{
		id: id, ln: ln, guard: guard, connectTimeout: connectTimeout, conns: conns,
		upgrader: websocket.Upgrader{
			Subprotocols: []string{"mqtt"},
			// Devices are not browsers; the web portal uses the HTTP API, not this endpoint.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/mqtt", l.handle)
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return l
}

func (l *wsListener) ID() string                  { return l.id }
func (l *wsListener) Address() string             { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string            { return "ws" }
func (l *wsListener) Init(log *slog.Logger) error { l.log = log; return nil }

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	if !l.conns.enter(c.NetConn()) {
		return
	}
	defer l.conns.leave(c.NetConn())
	_ = c.NetConn().SetReadDeadline(time.Now().Add(l.connectTimeout))
	gc := l.guard(&wsConn{Conn: c.NetConn(), c: c})
	defer finished(gc)
	if err := l.establish(l.id, gc); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("mqtt websocket connection ended", "remote", r.RemoteAddr, "error", err)
	}
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !l.end.Load() {
		l.log.Warn("mqtt websocket listener stopped", "error", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		closeClients(l.id)
	}
	_ = l.srv.Close()
}

// wsConn turns a WebSocket's binary messages into the byte stream mochi reads.
type wsConn struct {
	net.Conn
	c  *websocket.Conn
	r  io.Reader
	mu sync.Mutex
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: %w", errNotBinary)
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

var errNotBinary = errors.New("MQTT over WebSocket needs binary messages")

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }

// listen opens a TCP listener, with TLS when tlsCfg is set.
func listen(addr string, tlsCfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	return ln, nil
}
