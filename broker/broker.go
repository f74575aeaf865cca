// Package broker embeds the MQTT broker (github.com/mochi-mqtt/server/v2) in devicehub: our own
// listeners (TCP, WebSocket, TLS) with a frame guard in front of mochi's decoder, the storage
// hook that keeps sessions in our SQLite database, and the hook that authenticates devices and
// enforces who may publish and subscribe where by asking the hub. mochi types stay in here.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/metrics"
)

// Options configures the embedded broker.
type Options struct {
	TCPAddr        string // empty: no TCP listener
	WSAddr         string // empty: no WebSocket listener
	TLS            *tls.Config
	AllowAnonymous bool
	// MaxPacketSize bounds every packet; MaxConnectPacketSize the first (CONNECT).
	MaxPacketSize        int
	MaxConnectPacketSize int
	// ConnectTimeout bounds the time from accepting a connection to having read its CONNECT,
	// the TLS handshake included (0: 10 s): a silent or trickling client holds a connection
	// and a goroutine for no longer.
	ConnectTimeout time.Duration
	// MaxUnackedPublishes bounds one connection's QoS 1 telemetry publishes waiting for their
	// commit; past it the connection is not read (0: 256).
	MaxUnackedPublishes int
	State               StateStore
	// Hub authenticates devices and answers their requests; nil accepts no device (only
	// anonymous clients, when allowed).
	Hub *hub.Hub
	// SyncWindow caps the sync entries in flight to one controller (0: the hub's setting).
	SyncWindow int
	Metrics    *metrics.Metrics
	Logger     *slog.Logger
}

// AddrError names the listener that could not be opened.
type AddrError struct {
	Listener string // "tcp" or "ws"
	Addr     string
	Err      error
}

func (e *AddrError) Error() string {
	return fmt.Sprintf("mqtt %s listener %s: %v", e.Listener, e.Addr, e.Err)
}
func (e *AddrError) Unwrap() error { return e.Err }

// Broker is the running embedded broker.
type Broker struct {
	srv     *mqtt.Server
	log     *slog.Logger
	tcpAddr string
	wsAddr  string
	opened  []net.Listener
	storage *storageHook
	auth    *authHook
	drops   *dropHook
	// dropFlush bounds how long Drop waits for the device to acknowledge what the hub told
	// it last.
	dropFlush time.Duration
	// served are our listeners, conns the connections they serve (listener.go).
	served []listeners.Listener
	conns  *connTracker
}

// New builds the broker and opens its listeners (so a port in use fails here, by name).
func New(opts Options) (*Broker, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.MaxPacketSize == 0 {
		opts.MaxPacketSize = 256 * 1024
	}
	if opts.MaxConnectPacketSize == 0 {
		opts.MaxConnectPacketSize = 4096
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = defaultConnectTimeout
	}
	if opts.MaxUnackedPublishes <= 0 {
		opts.MaxUnackedPublishes = defaultMaxUnacked
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(opts.MaxPacketSize)
	// A device keeps its session for at most 30 days offline; mochi's default is forever.
	caps.MaximumSessionExpiryInterval = 30 * 24 * 3600
	// mochi copies a publish's properties into its PUBACK, user properties included, and
	// then writes its "granted QoS 1" code (0x01, not a PUBACK reason code) as the reason.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// What the hub offers, made true on the wire by limitsHook (limits.go): QoS 0 and 1, no
	// retained messages, no topic aliases.
	caps.MaximumQos = 1
	caps.RetainAvailable = 0
	if opts.AllowAnonymous {
		caps.RetainAvailable = 1 // for clients without credentials only (limits.go)
	}
	caps.TopicAliasMaximum = 0
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		InlineClient:           true,
		Logger:                 newMochiLogger(log), // mochilog.go
		SysTopicResendInterval: 0,
	})
	b := &Broker{srv: srv, log: log, drops: newDropHook(), dropFlush: defaultDropFlush, conns: newConnTracker()}
	// First, so that it sees each packet before any other hook does.
	limits := &limitsHook{srv: srv, anonymousRetain: opts.AllowAnonymous}
	if err := srv.AddHook(limits, nil); err != nil {
		return nil, fmt.Errorf("add limits hook: %w", err)
	}

	if opts.AllowAnonymous {
		log.Warn("!!! broker.allow_anonymous is true: ANY MQTT client may connect without credentials. Local experiments only !!!")
	}
	auth := &authHook{hub: opts.Hub, allowAnonymous: opts.AllowAnonymous, metrics: opts.Metrics, log: log, srv: srv,
		inline: srv.NewClient(nil, "local", "inline", true), drops: b.drops, ids: newPacketIDHook(log, srv),
		maxUnacked: opts.MaxUnackedPublishes}
	b.auth = auth
	limits.auth = auth
	if err := srv.AddHook(auth.ids, nil); err != nil { // packetids.go
		return nil, fmt.Errorf("add packet ID hook: %w", err)
	}
	if err := srv.AddHook(auth, nil); err != nil {
		return nil, fmt.Errorf("add auth hook: %w", err)
	}
	if err := srv.AddHook(b.drops, nil); err != nil { // drop.go
		return nil, fmt.Errorf("add drop hook: %w", err)
	}
	if opts.Hub != nil {
		relay := &relayHook{auth: auth, hub: opts.Hub, srv: srv, log: log, window: opts.SyncWindow} // relay.go
		if err := srv.AddHook(relay, nil); err != nil {
			return nil, fmt.Errorf("add relay hook: %w", err)
		}
	}
	opts.Metrics.RegisterBroker(brokerStats{srv})
	if opts.State != nil {
		b.storage = &storageHook{store: opts.State, timeout: 10 * time.Second, keepRetained: opts.AllowAnonymous}
		if err := srv.AddHook(b.storage, nil); err != nil {
			return nil, fmt.Errorf("add storage hook: %w", err)
		}
	}

	guard := newGuard(opts.MaxConnectPacketSize, opts.MaxPacketSize, func(reason string) {
		opts.Metrics.FramesRejected.WithLabelValues(reason).Inc()
	})
	if opts.TCPAddr != "" {
		ln, err := listen(opts.TCPAddr, opts.TLS)
		if err != nil {
			b.closeOpened()
			return nil, &AddrError{Listener: "tcp", Addr: opts.TCPAddr, Err: err}
		}
		b.opened = append(b.opened, ln)
		b.tcpAddr = ln.Addr().String()
		proto := "tcp"
		if opts.TLS != nil {
			proto = "tls"
		}
		tcp := &listener{id: "tcp", proto: proto, ln: ln, guard: guard, connectTimeout: opts.ConnectTimeout, conns: b.conns}
		b.served = append(b.served, tcp)
		if err := srv.AddListener(tcp); err != nil {
			b.closeOpened()
			return nil, err
		}
	}
	if opts.WSAddr != "" {
		ln, err := listen(opts.WSAddr, opts.TLS)
		if err != nil {
			b.closeOpened()
			return nil, &AddrError{Listener: "ws", Addr: opts.WSAddr, Err: err}
		}
		b.opened = append(b.opened, ln)
		b.wsAddr = ln.Addr().String()
		ws := newWSListener("ws", ln, guard, opts.ConnectTimeout, b.conns)
		b.served = append(b.served, ws)
		if err := srv.AddListener(ws); err != nil {
			b.closeOpened()
			return nil, err
		}
	}
	return b, nil
}

func (b *Broker) closeOpened() {
	for _, ln := range b.opened {
		_ = ln.Close()
	}
}

// Start restores persisted sessions and starts serving every listener.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	return nil
}

// TCPAddr is the address the TCP listener is bound to ("" when off).
func (b *Broker) TCPAddr() string { return b.tcpAddr }

// WSAddr is the address the WebSocket listener is bound to ("" when off).
func (b *Broker) WSAddr() string { return b.wsAddr }

// Publish sends a message from the hub itself (it bypasses the ACL, which is for clients).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

// HubPublisher is how the hub sends to devices: through the broker, at the QoS asked.
func (b *Broker) HubPublisher() hub.Publisher { return hubPublisher{b} }

type hubPublisher struct{ b *Broker }

func (p hubPublisher) Publish(_ context.Context, topic string, payload []byte, qos byte) error {
	return p.b.srv.Publish(topic, payload, false, qos)
}

// Close disconnects every client and stops the listeners. Session state was written as it
// changed, so nothing is left to flush.
func (b *Broker) Close() error {
	// Stop accepting and disconnect every client ourselves (as mochi's Close would), end the
	// connections still without a CONNECT, and wait until mochi is done with all of them:
	// only then is mochi's own Close free of a race with a connection being set up.
	for _, l := range b.served {
		l.Close(closeListenerClients(b.srv))
	}
	if !b.conns.closeAll(5 * time.Second) {
		b.log.Warn("mqtt connections still open after 5s; closing the broker anyway")
	}
	err := b.srv.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// closeListenerClients is the closer a listener runs when it closes: it disconnects the
// listener's open clients. It stands in for mochi's own (Server.closeListenerClients),
// whose Clients.GetByListener takes the clients' read lock twice (its Len inside its own
// RLock): a client connecting or leaving in between queues a writer, the second RLock
// waits behind it and the writer waits for the first, so closing a broker while clients
// come and go could hang for good (mochi-mqtt/server#488, fix not released in v2.7.9).
// GetAll copies the table under one read lock.
func closeListenerClients(srv *mqtt.Server) listeners.CloseFn {
	return func(listenerID string) {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Listener == listenerID && !cl.Closed() {
				disconnect(srv, cl, packets.ErrServerShuttingDown)
			}
		}
	}
}

// closeServer closes a mochi server that is not a Broker (the benchmarks' bare mochi):
// its listeners first, with closeListenerClients, so that mochi's Close, which would run
// its own closer, finds them closed (a listener runs its closer once).
func closeServer(srv *mqtt.Server) error {
	srv.Listeners.CloseAll(closeListenerClients(srv))
	return srv.Close()
}

// brokerStats reads mochi's own counters for /metrics.
type brokerStats struct{ srv *mqtt.Server }

func (s brokerStats) ClientsConnected() float64 {
	return float64(atomic.LoadInt64(&s.srv.Info.ClientsConnected))
}
func (s brokerStats) MessagesIn() float64 {
	return float64(atomic.LoadInt64(&s.srv.Info.MessagesReceived))
}
func (s brokerStats) MessagesOut() float64 {
	return float64(atomic.LoadInt64(&s.srv.Info.MessagesSent))
}

// disconnect ends a client's connection from the server's side. An MQTT 5 client is told why
// in a DISCONNECT; MQTT 3.1.1 has no DISCONNECT from the server (only clients send one,
// [MQTT-3.14]), and mochi's DisconnectClient sends it whatever the version, so a 3.1.1
// connection is just closed.
func disconnect(srv *mqtt.Server, cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = srv.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}
