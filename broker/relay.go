package broker

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// relayHook connects the hub's sync relay to controllers. A controller that subscribed to its
// sync topic (devices/{id}/sync) gets a hub.SyncSession; the hook writes the session's
// entries straight to that one client and reports each PUBACK back as the flow-control
// signal.
//
// Entries are written to the client directly rather than through mochi's publish path, for
// two reasons: mochi would queue without bound for a slow subscriber and drop past its
// in-flight limit (8,192) without telling anyone, and its storage hook would persist every
// relayed message a second time, when the sync log and the controller's durable cursor are
// already the record. The packet ID is still reserved in mochi's in-flight table, so mochi
// never hands the same ID to another message and routes the PUBACK to OnQosComplete.
type relayHook struct {
	mqtt.HookBase
	auth *authHook
	hub  *hub.Hub
	srv  *mqtt.Server
	log  interface {
		Warn(msg string, args ...any)
	}
	window int

	conns sync.Map // client ID → *relayConn
}

// relayConn is one controller connection with an open sync session.
type relayConn struct {
	cl      *mqtt.Client
	session *hub.SyncSession
	mu      sync.Mutex
	pids    map[uint16]int64 // packet ID → cursor, for entries not yet acknowledged
	// out holds encoded entries until the session's flush; only the session's goroutine
	// touches it.
	out bytes.Buffer
}

// relayFlushAt is how many encoded bytes the relay buffers before it writes without waiting
// for the end of the batch.
const relayFlushAt = 64 << 10

// encode appends pk to rc.out as mochi's Client.WritePacket would write it to cl.
func (rc *relayConn) encode(pk packets.Packet) error {
	cl := rc.cl
	pk.ProtocolVersion = cl.Properties.ProtocolVersion
	pk.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
	if cl.Properties.Props.RequestProblemInfoFlag && cl.Properties.Props.RequestProblemInfo == 0 {
		pk.Mods.DisallowProblemInfo = true
	}
	pk.Mods.AllowResponseInfo = true
	start := rc.out.Len()
	if err := pk.PublishEncode(&rc.out); err != nil {
		rc.out.Truncate(start)
		return err
	}
	if pk.Mods.MaxSize > 0 && uint32(rc.out.Len()-start) > pk.Mods.MaxSize {
		rc.out.Truncate(start)
		return packets.ErrPacketTooLarge
	}
	return nil
}

// flush writes what is buffered to the connection in one write, under the client's lock
// (which mochi holds for each of its own writes, so packets never interleave). A failed
// write leaves the connection unusable: it is closed, and with it the session.
func (h *relayHook) flush(rc *relayConn) error {
	if rc.out.Len() == 0 {
		return nil
	}
	cl := rc.cl
	n := int64(rc.out.Len())
	var err error
	if cl.Closed() {
		err = mqtt.ErrConnectionClosed
	} else {
		cl.Lock()
		_, err = rc.out.WriteTo(cl.Net.Conn)
		cl.Unlock()
	}
	rc.out.Reset()
	if err != nil {
		cl.Stop(err)
		return err
	}
	atomic.AddInt64(&h.srv.Info.BytesSent, n)
	return nil
}

func (h *relayHook) ID() string { return "devicehub-relay" }

func (h *relayHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnDisconnect, mqtt.OnPacketRead:
		return true
	}
	return false
}

// controller returns the identity of a bound controller, or false.
func (h *relayHook) controller(cl *mqtt.Client) (devices.Identity, bool) {
	if cl.Net.Inline {
		return devices.Identity{}, false
	}
	c := h.auth.connOf(cl)
	if c == nil || c.anonymous || !c.id.Bound() || !devices.IsController(c.id.Type) {
		return devices.Identity{}, false
	}
	return c.id, true
}

// subscribedToSync reports whether the client holds a subscription covering its sync topic.
func subscribedToSync(cl *mqtt.Client) bool {
	topic := devices.ControllerSyncTopic(cl.ID)
	for f := range cl.State.Subscriptions.GetAll() {
		if devices.Match(f, topic) {
			return true
		}
	}
	return false
}

func (h *relayHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline || h.auth.hub == nil {
		return
	}
	c := h.auth.connOf(cl)
	if c == nil || c.anonymous {
		return
	}
	// A resumed session keeps its subscriptions: the relay starts without a new SUBSCRIBE.
	if _, ok := h.controller(cl); ok && subscribedToSync(cl) {
		h.start(cl)
	}
}

func (h *relayHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if _, ok := h.controller(cl); ok && subscribedToSync(cl) {
		h.start(cl)
	}
}

func (h *relayHook) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if !subscribedToSync(cl) {
		h.stop(cl)
	}
}

func (h *relayHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.stop(cl) }

// OnPacketRead completes relayed entries from the controller's PUBACKs as they arrive.
// mochi keeps the client's and the server's packet IDs in one in-flight map, so a client
// publish that happens to reuse the ID of a relayed entry makes mochi drop its record of that
// entry: its OnQosComplete would never come and the window slot would leak until the
// controller reconnects. Reading the PUBACK itself does not depend on that map.
func (h *relayHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Puback {
		return pk, nil
	}
	v, ok := h.conns.Load(cl.ID)
	if !ok {
		return pk, nil
	}
	rc := v.(*relayConn)
	if rc.cl != cl {
		return pk, nil
	}
	rc.mu.Lock()
	cursor, ok := rc.pids[pk.PacketID]
	delete(rc.pids, pk.PacketID)
	rc.mu.Unlock()
	if ok {
		rc.session.Delivered(cursor)
	}
	return pk, nil
}

// start opens a sync session for the connection, unless it has one.
func (h *relayHook) start(cl *mqtt.Client) {
	id, ok := h.controller(cl)
	if !ok {
		return
	}
	if v, ok := h.conns.Load(cl.ID); ok && v.(*relayConn).cl == cl {
		return
	}
	window := h.window
	// An MQTT 5 client may allow fewer unacknowledged messages than our window.
	if rm := int(cl.Properties.Props.ReceiveMaximum); cl.Properties.ProtocolVersion == 5 && rm > 0 && (window <= 0 || rm < window) {
		window = rm
	}
	rc := &relayConn{cl: cl, pids: map[uint16]int64{}}
	topic := devices.ControllerSyncTopic(cl.ID)
	send := func(cursor int64, payload []byte) error {
		if cl.Closed() {
			return mqtt.ErrConnectionClosed
		}
		pid, err := cl.NextPacketID()
		if err != nil {
			return err
		}
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   topic,
			Payload:     payload,
			PacketID:    uint16(pid),
			Created:     time.Now().Unix(),
			Origin:      "hub",
		}
		if err := rc.encode(pk); err != nil {
			return err
		}
		rc.mu.Lock()
		rc.pids[pk.PacketID] = cursor
		rc.mu.Unlock()
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&h.srv.Info.Inflight, 1)
		}
		atomic.AddInt64(&h.srv.Info.PacketsSent, 1)
		atomic.AddInt64(&h.srv.Info.MessagesSent, 1)
		if rc.out.Len() >= relayFlushAt {
			return h.flush(rc)
		}
		return nil
	}
	// Entries are written a batch at a time (one write for up to a window of them) rather
	// than one write each as mochi's WritePacket does: a fast stream to one phone otherwise
	// costs a system call per entry on both ends.
	rc.session = h.hub.OpenSyncBatched(id, window, send, func() error { return h.flush(rc) })
	if rc.session == nil {
		return
	}
	if prev, loaded := h.conns.Swap(cl.ID, rc); loaded {
		h.release(prev.(*relayConn), false)
	}
	rc.session.Start()
}

// stop closes the connection's session, if it has one.
func (h *relayHook) stop(cl *mqtt.Client) {
	v, ok := h.conns.Load(cl.ID)
	if !ok || v.(*relayConn).cl != cl {
		return
	}
	rc := v.(*relayConn)
	h.conns.CompareAndDelete(cl.ID, rc)
	h.release(rc, true)
}

// release ends a session and frees the packet IDs it still held, so a persistent session
// does not redeliver them on reconnect on top of the relay's own catch-up from the durable
// cursor.
func (h *relayHook) release(rc *relayConn, closeSession bool) {
	if closeSession {
		rc.session.Close()
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for pid := range rc.pids {
		if rc.cl.State.Inflight.Delete(pid) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
		}
	}
	clear(rc.pids)
}
