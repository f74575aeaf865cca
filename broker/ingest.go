package broker

import (
	"context"
	"encoding/json"
	"strconv"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// ingestTelemetry commits a telemetry publish to the sync log before mochi acknowledges it
// (OnPublish runs before the PUBACK), and never fans the raw message out: controllers get it
// from the relay, with its cursor. The returned packet is marked ignored: mochi acknowledges
// it and delivers it to nobody.
//
// Refusals (invalid payload, unbound, unpaired) are acknowledged too, with the reason on the
// device's response topic, because a v3.1.1 client has no way to read a refusal in a PUBACK
// and would otherwise resend the message forever; MQTT 5 clients also get the reason code in
// the PUBACK. A failure to store is the one case that must not be acknowledged: an MQTT 5
// client gets an error code, a v3.1.1 client is disconnected without a PUBACK so it resends.
func (h *authHook) ingestTelemetry(cl *mqtt.Client, c *conn, pk packets.Packet, stream string) (packets.Packet, error) {
	pk.Ignore = true
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	err := h.hub.IngestTelemetry(ctx, c.id, stream, pk.Payload)
	if err == nil {
		return pk, nil
	}
	code := hub.ErrorCode(err)
	if code == hub.EInternal {
		h.log.Error("telemetry not stored", "device", c.id.DeviceID, "stream", stream, "error", err)
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
			return pk, packets.ErrImplementationSpecificError
		}
		cl.Stop(packets.ErrServerUnavailable)
		return pk, packets.ErrRejectPacket
	}
	h.metrics.ACLRefusals.WithLabelValues("telemetry", code).Inc()
	h.sendResponse(c.id, devices.Response{ID: telemetryResponseID(stream, pk.Payload), Error: errorBody(err)})
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		if code == hub.EInvalid {
			return pk, packets.ErrPayloadFormatInvalid
		}
		return pk, packets.ErrNotAuthorized
	}
	return pk, nil
}

// telemetryResponseID names a refused sample in the response, so the device can tell which
// one it was: "telemetry:{stream}:{seq}" (without seq when the payload had none).
func telemetryResponseID(stream string, payload []byte) string {
	id := "telemetry:" + stream
	var v struct {
		Seq uint64 `json:"seq"`
	}
	if json.Unmarshal(payload, &v) == nil && v.Seq > 0 {
		id += ":" + strconv.FormatUint(v.Seq, 10)
	}
	return truncate(id, devices.MaxRequestIDLen)
}

// sendResponse publishes a response on the device's response topic.
func (h *authHook) sendResponse(id devices.Identity, resp devices.Response) {
	b, _ := json.Marshal(resp)
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   devices.ResponseTopic(id.DeviceID),
		Payload:     b,
		PacketID:    1, // mochi never acknowledges the inline client's publishes, but validates the ID
	}
	if err := h.srv.InjectPacket(h.inline, out); err != nil {
		h.log.Warn("send response", "device", id.DeviceID, "error", err)
	}
}
