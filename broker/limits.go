package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// limitsHook makes what the broker advertises true on the wire. mochi v2.7.9 applies some of
// its capabilities only halfway:
//
//   - Retained messages: devices never need them (docs/protocol.md), and a retained message
//     outlives its device's binding: one left on a device's own topic (a retained will, which
//     mochi publishes without asking OnPublish) would reach the device's next owner and be
//     written to the database. So RetainAvailable is 0: mochi then retains nothing. mochi
//     does not say so in its CONNACK, so this hook adds Retain Available = 0 to v5 CONNACKs,
//     and a v5 PUBLISH with RETAIN gets DISCONNECT 0x9A [MQTT-3.2.2-14] (mochi would drop the
//     flag silently). MQTT 3.1.1 cannot be told: its retained publishes and retained wills are
//     accepted and delivered without the flag (mochi would answer a 3.1.1 retained will with
//     CONNACK 0x9A, which 3.1.1 does not have).
//   - QoS 2: the hub offers QoS 0 and 1 (MaximumQos 1, which mochi does advertise in v5
//     CONNACKs). mochi answers a QoS 2 PUBLISH anyway, by lowering it to QoS 1 and sending a
//     PUBACK, which a QoS 2 sender does not expect; the telemetry acker would do the same. A
//     QoS 2 PUBLISH gets DISCONNECT 0x9B from a v5 connection [MQTT-3.2.2-11] and closes a
//     3.1.1 connection (3.1.1 has no way to refuse it); a 3.1.1 will at QoS 2 is lowered to
//     QoS 1 (mochi would answer CONNACK 0x9B, which 3.1.1 does not have), a v5 one gets
//     CONNACK 0x9B [MQTT-3.2.2-12].
//
// Topic aliases are switched off in the capabilities alone (TopicAliasMaximum 0: a publish
// with an alias gets DISCONNECT 0x94, and the CONNACK's missing Topic Alias Maximum means 0):
// mochi accepted up to 65,535 without saying so, but checked the ACL on the empty topic of an
// aliased publish before resolving the alias, so every aliased publish was refused.
//
// With broker.allow_anonymous (local experiments, loopback only) clients without device
// credentials get an ordinary broker: their retained messages and retained wills are kept
// (and survive a restart through the storage hook). Devices never: their retain flags are
// dropped as above, and their v5 CONNACKs still say Retain Available 0.
type limitsHook struct {
	mqtt.HookBase
	srv *mqtt.Server
	// anonymousRetain: broker.allow_anonymous is on, so clients without credentials may
	// retain (RetainAvailable is 1 then); auth tells them apart.
	anonymousRetain bool
	auth            *authHook
}

// retains reports whether cl may leave retained messages.
func (h *limitsHook) retains(cl *mqtt.Client) bool {
	if !h.anonymousRetain || h.auth == nil {
		return false
	}
	c := h.auth.connOf(cl)
	return c != nil && c.anonymous
}

func (h *limitsHook) ID() string { return "devicehub-limits" }

func (h *limitsHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnWill:
		return true
	}
	return false
}

// OnPacketRead runs before mochi looks at the packet (also the CONNECT).
func (h *limitsHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		// Not yet authenticated: a connection without a user name is the only one that can
		// become anonymous (one with wrong credentials too, but its will is checked in
		// OnWill, where the connection is known).
		anon := h.anonymousRetain && !pk.Connect.UsernameFlag
		if pk.Connect.WillFlag && !anon && (pk.ProtocolVersion < 5 || h.anonymousRetain) {
			pk.Connect.WillRetain = false
		}
		if pk.ProtocolVersion < 5 && pk.Connect.WillFlag {
			pk.Connect.WillQos = min(pk.Connect.WillQos, 1)
		}
	case packets.Publish:
		if cl.Net.Inline {
			return pk, nil
		}
		v5 := cl.Properties.ProtocolVersion == 5
		if pk.FixedHeader.Qos == 2 {
			if v5 {
				_ = h.srv.DisconnectClient(cl, packets.ErrQosNotSupported)
			}
			return pk, packets.ErrRejectPacket // ends the connection
		}
		if pk.FixedHeader.Retain && !h.retains(cl) {
			if v5 {
				_ = h.srv.DisconnectClient(cl, packets.ErrRetainNotSupported)
				return pk, packets.ErrRejectPacket
			}
			pk.FixedHeader.Retain = false
		}
	}
	return pk, nil
}

// OnPacketEncode tells v5 clients that retained messages are not available.
func (h *limitsHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == 0 && cl.Properties.ProtocolVersion == 5 && !h.retains(cl) {
		pk.Properties.RetainAvailable, pk.Properties.RetainAvailableFlag = 0, true
	}
	return pk
}

// OnWill never lets a device's will be retained, also one of a session stored by an older
// version.
func (h *limitsHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if !h.retains(cl) {
		will.Retain = false
	}
	will.Qos = min(will.Qos, 1)
	return will, nil
}
