package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/devicehub/devicehub/broker"
	"github.com/devicehub/devicehub/metrics"
)

// TestConnectDeadline: connections that do not complete their CONNECT in time are closed by
// the server: silent ones, ones that stop in the middle of the CONNECT (before and after its
// length), over TCP, TLS (the handshake never starts) and WebSocket. mochi set no deadline
// before the CONNECT, so each held a connection and a goroutine forever. A client that
// connects properly meanwhile is served, and keeps its connection past the deadline.
func TestConnectDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	m := metrics.New()
	b, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", AllowAnonymous: true,
		ConnectTimeout: timeout, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	tb, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0", AllowAnonymous: true, TLS: testTLS(t),
		ConnectTimeout: timeout, Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Close() })

	dial := func(t *testing.T, addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// A bound on the test, far above the deadline under test.
		_ = c.SetDeadline(time.Now().Add(hangGuard))
		return c
	}
	connect := connectFrame(4, "patient")
	var conns []net.Conn
	for range 3 {
		conns = append(conns, dial(t, b.TCPAddr())) // silent
	}
	half := dial(t, b.TCPAddr())
	_, _ = half.Write(connect[:1]) // the fixed header byte only
	conns = append(conns, half)
	partial := dial(t, b.TCPAddr())
	_, _ = partial.Write(connect[:len(connect)-3]) // all but the end of the client ID
	conns = append(conns, partial)
	for range 2 {
		conns = append(conns, dial(t, tb.TCPAddr())) // TLS listener, no ClientHello
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+b.WSAddr()+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	_ = ws.NetConn().SetDeadline(time.Now().Add(hangGuard))

	// A well-behaved client is unaffected, also after the deadline has passed for the others.
	good := dial(t, b.TCPAddr())
	if _, err := good.Write(connect); err != nil {
		t.Fatal(err)
	}
	if hdr, body, err := readPacket(good); err != nil || hdr != 0x20 || body[1] != 0 {
		t.Fatalf("CONNACK: %#x % x %v", hdr, body, err)
	}

	for i, c := range conns {
		start := time.Now()
		assertClosed(t, c)
		t.Logf("connection %d closed %v after the check began", i, time.Since(start))
	}
	if _, _, err := ws.NextReader(); err == nil {
		t.Fatal("websocket connection without CONNECT got a message")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("websocket connection without CONNECT not closed by the server: %v", err)
	}
	var got dto.Metric
	if err := m.FramesRejected.WithLabelValues("connect_timeout").Write(&got); err != nil {
		t.Fatal(err)
	}
	if v := got.GetCounter().GetValue(); v != 6 {
		t.Errorf("connections counted as connect_timeout: %v, want 6 (TCP and WebSocket)", v)
	}
	// PINGREQ/PINGRESP: the good client is still served.
	if _, err := good.Write([]byte{0xc0, 0}); err != nil {
		t.Fatal(err)
	}
	if hdr, _, err := readPacket(good); err != nil || hdr != 0xd0 {
		t.Fatalf("PINGRESP: %#x %v", hdr, err)
	}
}

// testTLS is a server configuration with a fresh self-signed certificate.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
