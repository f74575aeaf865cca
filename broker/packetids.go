package broker

import (
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
type packetIDHook struct {
	mqtt.HookBase
	log *slog.Logger

	mu     sync.Mutex
	parked map[*mqtt.Client]packets.Packet
}

func newPacketIDHook(log *slog.Logger) *packetIDHook {
	return &packetIDHook{log: log, parked: make(map[*mqtt.Client]packets.Packet)}
}

func (h *packetIDHook) ID() string { return "devicehub-packet-ids" }

func (h *packetIDHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnPacketRead parks the server's in-flight message whose ID the client's packet reuses.
func (h *packetIDHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
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

func (h *packetIDHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.restore(cl) }

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
