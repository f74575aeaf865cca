package broker

import (
	"context"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
)

// subscribedToCommands reports whether the client holds a subscription covering its
// commands topic.
func subscribedToCommands(cl *mqtt.Client) bool {
	topic := devices.CommandTopic(cl.ID)
	for f := range cl.State.Subscriptions.GetAll() {
		if devices.Match(f, topic) {
			return true
		}
	}
	return false
}

// resendCommands asks the hub to send the device its unacknowledged commands, when the
// device can receive them: a resumed session that kept its subscription. A fresh session
// subscribes after CONNACK, and OnSubscribed sends them then; a publish before that would
// reach nobody.
func (h *authHook) resendCommands(ctx context.Context, cl *mqtt.Client, c *conn) {
	if c == nil || c.anonymous || h.hub == nil || !c.id.Bound() || !devices.IsController(c.id.Type) || !subscribedToCommands(cl) {
		return
	}
	h.hub.DeviceConnected(ctx, c.id.DeviceID)
}

// OnSubscribed sends the device its unacknowledged commands when it (re)subscribes to its
// commands topic, so commands issued while it was away, or before a restart, reach it.
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
	if c == nil || c.anonymous || !c.id.Bound() || !devices.IsController(c.id.Type) {
		return // only phones and tablets take owner commands
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	h.hub.DeviceConnected(ctx, c.id.DeviceID)
}
