package broker

import (
	"context"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
)

// OnSubscribed sends the device what it missed when it (re)subscribes to its commands
// topic: settings changed while it was away (its own and the account profile, every bound
// device type), pairing notices it has not acknowledged (a link key made while it was
// offline, a pairing that ended) and, for phones and tablets, its unacknowledged owner commands, so what was
// issued while it was away, or before a restart, reaches it.
//
// This is the only trigger, not OnSessionEstablished: a device subscribes right after
// CONNACK (paho does on every connect, persistent session or not), and mochi keeps the
// packet IDs of its own outgoing messages and of the client's SUBSCRIBE in one table, so a
// command published at session start would take ID 1 and mochi would refuse the client's
// SUBSCRIBE with ID 1 (0x91, identifier in use). Here the SUBSCRIBE has been processed.
func (h *authHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline || h.hub == nil {
		return
	}
	topic := devices.CommandTopic(cl.ID)
	granted := false
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 && devices.Match(f.Filter, topic) {
			granted = true
		}
	}
	if !granted {
		return
	}
	c := h.connOf(cl)
	if c == nil || c.anonymous || !c.id.Bound() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	if devices.IsController(c.id.Type) {
		h.hub.DeviceConnected(ctx, c.id.DeviceID) // only phones and tablets take owner commands
	}
	h.hub.SettingsOnConnect(ctx, c.id)
	h.hub.PairingsOnSubscribe(ctx, c.id)
}
