package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
//
// The other direction: what the hub sends while it handles a client's QoS 1 request (the
// answer, the "unbound" notice of a device unbinding itself) must not take the request's own
// ID, which is not in the table while the hooks run. mochi then stores its PUBACK under that
// ID, overwriting the hub's message, and deletes it, so the message was never resent and a
// drop waiting for its acknowledgement did not wait. The auth hook calls reserve before it
// hands a request to the hub: the ID gets the PUBACK entry mochi itself puts there a moment
// later (and removes); should mochi not, the reservation goes when the client's next packet
// is read or the connection ends.
type packetIDHook struct {
	mqtt.HookBase
	log *slog.Logger
	srv *mqtt.Server // its in-flight count, which mochi lowers when it deletes the reservation

	mu   sync.Mutex
	held map[*mqtt.Client]heldIDs
	n    atomic.Int32 // len(held), so the usual packet (nothing held) takes no lock
}

// heldIDs is what the hook holds for one client until its next packet.
type heldIDs struct {
	parked   *packets.Packet // the server's message moved out of the client's way
	reserved uint16          // a request's ID kept from the server's messages (0: none)
}

func newPacketIDHook(log *slog.Logger, srv *mqtt.Server) *packetIDHook {
	return &packetIDHook{log: log, srv: srv, held: make(map[*mqtt.Client]heldIDs)}
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
	h.settle(cl)
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
	// A copy is parked, not out itself: taking out's address would move it (a whole packet)
	// to the heap on every QoS 1 publish, also the many that park nothing.
	parked := out
	h.put(cl, func(v *heldIDs) { v.parked = &parked })
	cl.State.Inflight.Delete(pk.PacketID)
	return pk, nil
}

func (h *packetIDHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) { h.settle(cl) }

func (h *packetIDHook) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) { h.settle(cl) }

func (h *packetIDHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.settle(cl) }

// reserve keeps the ID of the client's QoS 1 request from the server's messages while the
// hub handles it.
func (h *packetIDHook) reserve(cl *mqtt.Client, pid uint16) {
	if _, taken := cl.State.Inflight.Get(pid); taken {
		return
	}
	// Created matters: mochi's expiry sweep (about once a second) deletes any in-flight entry
	// older than the maximum message expiry, and a zero time is fifty years old, so a
	// reservation without it vanished whenever a sweep fell inside the request (an unbind,
	// with its password hash, lasts tens of milliseconds) and the answer took the ID.
	if cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pid, Created: time.Now().Unix()}) {
		atomic.AddInt64(&h.srv.Info.Inflight, 1)
	}
	h.put(cl, func(v *heldIDs) { v.reserved = pid })
}

func (h *packetIDHook) put(cl *mqtt.Client, set func(*heldIDs)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.held[cl]
	set(&v)
	h.held[cl] = v
	if !ok {
		h.n.Add(1)
	}
}

// settle removes a reservation mochi did not overwrite and delete itself, and puts the
// parked message back unless its ID has been taken meanwhile.
func (h *packetIDHook) settle(cl *mqtt.Client) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	v, ok := h.held[cl]
	if ok {
		delete(h.held, cl)
		h.n.Add(-1)
	}
	h.mu.Unlock()
	if !ok {
		return
	}
	if pid := v.reserved; pid != 0 {
		if pk, ok := cl.State.Inflight.Get(pid); ok && pk.FixedHeader.Type == packets.Puback && cl.State.Inflight.Delete(pid) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
		}
	}
	if pk := v.parked; pk != nil {
		if _, taken := cl.State.Inflight.Get(pk.PacketID); taken {
			h.log.Warn("parked in-flight message lost its packet ID; the sync log still has it", "client", cl.ID, "packet_id", pk.PacketID)
			return
		}
		cl.State.Inflight.Set(*pk)
	}
}
