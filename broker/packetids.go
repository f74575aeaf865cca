package broker

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
)

// packetIDHook keeps the client's packet identifiers apart from the server's.
//
// MQTT says the two sides assign packet IDs independently (3.1.1 §2.3.1, 5.0 §2.2.1), but
// mochi v2.7.9 keeps both in one in-flight table per client. A device that resumes a
// persistent session with queued messages (IDs 1, 2, 3 chosen by the server) and then sends
// SUBSCRIBE with ID 1, as every client library does after connecting, is refused with 0x91
// (identifier in use; 0x80 for 3.1.1); an UNSUBSCRIBE is refused the same way, and a QoS 1
// PUBLISH with a colliding ID makes mochi delete the server's own queued message, which is
// then never resent.
//
// The hook moves the server's entry out of the table just before mochi looks at the client's
// packet and puts it back as soon as mochi is done with it: after SUBSCRIBE and UNSUBSCRIBE
// in their own "after" hooks, after a PUBLISH when the client's next packet is read (its
// PUBACK for the parked ID can only come after that) or when the connection ends. The
// client's packets are read and processed one at a time, so nothing else of this client's
// can look for the parked entry meanwhile; the server's own ID counter only reaches a parked
// ID after wrapping 65,535 IDs, and should it ever, the newer entry is kept.
//
// The other direction: what the hub sends while it handles a client's QoS 1 PUBLISH (the
// answer to a request, the "unbound" notice of a device unbinding itself) must not take the
// publish's own ID, which is not in the table while the hooks run. mochi then stores its
// PUBACK under that ID, overwriting the hub's message, and deletes it, so the message was
// never resent and a drop waiting for its acknowledgement did not wait. OnPublish (this
// hook runs before the hub's) reserves the ID with the PUBACK entry mochi itself puts there
// a moment later; when mochi does not (the hub answers telemetry itself), the reservation is
// removed when the client's next packet is read or the connection ends.
type packetIDHook struct {
	mqtt.HookBase
	log *slog.Logger
	srv *mqtt.Server // its in-flight count, which mochi lowers when it deletes the reservation

	mu       sync.Mutex
	parked   map[*mqtt.Client]packets.Packet
	reserved map[*mqtt.Client]uint16
}

func newPacketIDHook(log *slog.Logger, srv *mqtt.Server) *packetIDHook {
	return &packetIDHook{log: log, srv: srv, parked: make(map[*mqtt.Client]packets.Packet), reserved: make(map[*mqtt.Client]uint16)}
}

func (h *packetIDHook) ID() string { return "devicehub-packet-ids" }

func (h *packetIDHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnPacketRead parks the server's in-flight message whose ID the client's packet reuses.
func (h *packetIDHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.release(cl)
	h.restore(cl)
	if cl.Net.Inline {
		return pk, nil
	}
	switch pk.FixedHeader.Type {
	case packets.Subscribe, packets.Unsubscribe:
	case packets.Publish:
		if pk.FixedHeader.Qos == 0 {
			return pk, nil
		}
	default:
		return pk, nil
	}
	out, ok := cl.State.Inflight.Get(pk.PacketID)
	// Publish and Pubrel are the server's own outgoing states; a Pubrec is the client's
	// QoS 2 publish still in flight, a real reuse that mochi must keep refusing.
	if !ok || (out.FixedHeader.Type != packets.Publish && out.FixedHeader.Type != packets.Pubrel) {
		return pk, nil
	}
	h.mu.Lock()
	h.parked[cl] = out
	h.mu.Unlock()
	cl.State.Inflight.Delete(pk.PacketID)
	return pk, nil
}

func (h *packetIDHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) { h.restore(cl) }

func (h *packetIDHook) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) { h.restore(cl) }

func (h *packetIDHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.release(cl)
	h.restore(cl)
}

// OnPublish reserves the ID of the client's QoS 1 publish while the hooks after this one
// handle it.
func (h *packetIDHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	// A device's own telemetry is answered by the hub's acker, never by mochi, so mochi
	// stores nothing under its ID: no reservation needed (each costs an allocation of a
	// whole packet in mochi's table, per sample).
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 || ownTelemetry(cl.ID, pk.TopicName) {
		return pk, nil
	}
	if _, taken := cl.State.Inflight.Get(pk.PacketID); taken {
		return pk, nil
	}
	if cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}) {
		atomic.AddInt64(&h.srv.Info.Inflight, 1)
	}
	h.mu.Lock()
	h.reserved[cl] = pk.PacketID
	h.mu.Unlock()
	return pk, nil
}

// release removes a reservation mochi did not overwrite and delete itself.
func (h *packetIDHook) release(cl *mqtt.Client) {
	h.mu.Lock()
	pid, ok := h.reserved[cl]
	delete(h.reserved, cl)
	h.mu.Unlock()
	if !ok {
		return
	}
	if pk, ok := cl.State.Inflight.Get(pid); ok && pk.FixedHeader.Type == packets.Puback && cl.State.Inflight.Delete(pid) {
		atomic.AddInt64(&h.srv.Info.Inflight, -1)
	}
}

// restore puts the client's parked message back, unless its ID has been taken meanwhile.
func (h *packetIDHook) restore(cl *mqtt.Client) {
	h.mu.Lock()
	pk, ok := h.parked[cl]
	delete(h.parked, cl)
	h.mu.Unlock()
	if !ok {
		return
	}
	if _, taken := cl.State.Inflight.Get(pk.PacketID); taken {
		h.log.Warn("parked in-flight message lost its packet ID; the sync log still has it", "client", cl.ID, "packet_id", pk.PacketID)
		return
	}
	cl.State.Inflight.Set(pk)
}

// ownTelemetry reports whether topic is under devices/{id}/telemetry/, without allocating.
func ownTelemetry(id, topic string) bool {
	const prefix, kind = devices.DevicesPrefix + "/", "/" + devices.KindTelemetry + "/"
	rest, ok := strings.CutPrefix(topic, prefix)
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, id)
	return ok && strings.HasPrefix(rest, kind)
}
