package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// ingestTelemetry commits a telemetry publish to the sync log before it is acknowledged, and
// never fans the raw message out: controllers get it from the relay, with its cursor.
//
// A QoS 1 publish is not acknowledged by mochi, which would do it on this connection's read
// goroutine right after this hook returns and so allow one commit at a time per device: the
// sample is validated and queued for the next group commit here, and the connection's
// acker (below) writes the PUBACK once that commit is done. A band flushing its backlog
// with many publishes in flight thus shares commits with itself, not only with other bands.
//
// Refusals (invalid payload, unbound, unpaired) are acknowledged too, with the reason on the
// device's response topic, because a v3.1.1 client has no way to read a refusal in a PUBACK
// and would otherwise resend the message forever; MQTT 5 clients also get the reason code in
// the PUBACK. A failure to store is the one case that must not be acknowledged: an MQTT 5
// client gets an error code, a v3.1.1 client is disconnected without a PUBACK so it resends.
func (h *authHook) ingestTelemetry(cl *mqtt.Client, c *conn, pk packets.Packet, stream string) (packets.Packet, error) {
	pk.Ignore = true
	v5 := cl.Properties.ProtocolVersion == 5
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
		defer cancel()
		if err := h.hub.IngestTelemetry(ctx, c.id, stream, pk.Payload); err != nil && hub.ErrorCode(err) != hub.EInternal {
			h.refuseTelemetry(c, stream, pk.Payload, err)
		} else if err != nil {
			h.log.Error("telemetry not stored", "device", c.id.DeviceID, "stream", stream, "error", err)
		}
		return pk, nil
	}
	a := h.ackerOf(cl)
	a.reserve()
	// No deadline of its own (a timer and a context per publish showed in profiles): what
	// can wait here is the queue of the store's committer when it is full, which is the
	// backpressure this connection should feel, and the committer fails queued work when
	// the store closes.
	wait, err := h.hub.StartTelemetry(context.Background(), c.id, stream, pk.Payload)
	switch {
	case err == nil:
		a.queue <- pendingAck{pid: pk.PacketID, stream: stream, wait: wait}
	case hub.ErrorCode(err) == hub.EInternal:
		h.log.Error("telemetry not stored", "device", c.id.DeviceID, "stream", stream, "error", err)
		a.queue <- pendingAck{pid: pk.PacketID, code: packets.ErrImplementationSpecificError, failed: true}
	default:
		h.refuseTelemetry(c, stream, pk.Payload, err)
		code := packets.CodeSuccess
		if v5 && hub.ErrorCode(err) == hub.EInvalid {
			code = packets.ErrPayloadFormatInvalid
		} else if v5 {
			code = packets.ErrNotAuthorized
		}
		a.queue <- pendingAck{pid: pk.PacketID, code: code}
	}
	// The acker answers; mochi must neither acknowledge nor deliver it.
	return pk, packets.ErrRejectPacket
}

// refuseTelemetry counts a refused sample and tells the device why on its response topic.
func (h *authHook) refuseTelemetry(c *conn, stream string, payload []byte, err error) {
	h.metrics.ACLRefusals.WithLabelValues("telemetry", hub.ErrorCode(err)).Inc()
	h.sendResponse(c.id, devices.Response{ID: telemetryResponseID(stream, payload), Error: errorBody(err)})
}

// defaultMaxUnacked bounds how many of one connection's QoS 1 publishes wait for their commit
// at once (broker.max_unacked_publishes). When it is reached the connection's next packet is
// not read until one is acknowledged: backpressure reaches the device through TCP, and
// memory stays bounded by configuration (connections × this × the largest packet).
const defaultMaxUnacked = 256

// pendingAck is one QoS 1 publish waiting for its PUBACK.
type pendingAck struct {
	pid    uint16
	stream string
	// wait, when set, waits for the sample's commit; otherwise code is the answer.
	wait   func(context.Context) error
	code   packets.Code
	failed bool // not stored: no success may be sent
}

// acker writes one connection's PUBACKs for pipelined publishes, in the order the publishes
// arrived (MQTT requires it), each only after its commit.
type acker struct {
	cl    *mqtt.Client
	log   *slog.Logger
	slots chan struct{}
	queue chan pendingAck
	// pending counts publishes not answered yet; only the connection's read goroutine adds.
	pending sync.WaitGroup
}

// ackerOf returns the connection's acker, starting it on the first pipelined publish.
// Only cl's read goroutine calls it, so there is no race to create two.
func (h *authHook) ackerOf(cl *mqtt.Client) *acker {
	if v, ok := h.ackers.Load(cl); ok {
		return v.(*acker)
	}
	n := h.maxUnacked
	a := &acker{cl: cl, log: h.log, slots: make(chan struct{}, n), queue: make(chan pendingAck, n)}
	h.ackers.Store(cl, a)
	go a.run()
	return a
}

// reserve takes a slot for the next publish, waiting while the connection has
// maxUnacked unanswered ones.
func (a *acker) reserve() {
	a.slots <- struct{}{}
	a.pending.Add(1)
}

func (a *acker) run() {
	v5 := a.cl.Properties.ProtocolVersion == 5
	stopped := false
	for p := range a.queue {
		if p.wait != nil {
			// The store answers every queued sample (stored, failed, or store closed), so
			// the wait needs no deadline of its own.
			if err := p.wait(context.Background()); err != nil {
				a.log.Error("telemetry not stored", "device", a.cl.ID, "stream", p.stream, "error", err)
				p.code, p.failed = packets.ErrImplementationSpecificError, true
			}
		}
		switch {
		case stopped:
		case p.failed && !v5:
			// No PUBACK: the device resends after reconnecting, and a repeated seq is
			// stored once. Later publishes are not acknowledged either (acknowledging them
			// would acknowledge this one, which a 3.1.1 client cannot tell apart).
			a.cl.Stop(packets.ErrServerUnavailable)
			stopped = true
		default:
			ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: p.pid, ReasonCode: p.code.Code}
			if p.code.Code >= packets.ErrUnspecifiedError.Code {
				ack.Properties.ReasonString = p.code.Reason
			}
			// A closed connection fails the write; the device resends what it has not seen
			// acknowledged.
			_ = a.cl.WritePacket(ack)
		}
		a.pending.Done()
		<-a.slots
	}
}

// settle waits until every pipelined publish of the connection is answered, so a packet
// mochi acknowledges itself is not acknowledged before earlier ones.
func (h *authHook) settle(cl *mqtt.Client) {
	if v, ok := h.ackers.Load(cl); ok {
		v.(*acker).pending.Wait()
	}
}

// stopAcker ends the connection's acker once its read loop has ended; what is queued is
// still answered (or fails to be written to the closed connection).
func (h *authHook) stopAcker(cl *mqtt.Client) {
	if v, ok := h.ackers.LoadAndDelete(cl); ok {
		close(v.(*acker).queue)
	}
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
