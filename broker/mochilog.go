package broker

import (
	"context"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiLogHandler sits between mochi and our logger. mochi logs whole packets, payload
// included, with some of its messages ("publish packet error" for every publish a hook
// refuses, at ERROR), and payloads are people's health data and positions: they must not
// end up in log files. Packets are reduced to what an operator needs (type, topic, packet
// ID, QoS, size), and the refusals our own hooks already log and count are demoted to DEBUG.
type mochiLogHandler struct {
	next slog.Handler
}

func newMochiLogger(log *slog.Logger) *slog.Logger {
	return slog.New(mochiLogHandler{next: log.Handler()}).With("component", "mqtt")
}

// demoted reports mochi messages about refusals our hooks decided and report themselves.
func demoted(msg string) bool {
	switch msg {
	case "publish packet error", "publish packet rejected", "packet rejected":
		return true
	}
	return false
}

func (h mochiLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h mochiLogHandler) Handle(ctx context.Context, r slog.Record) error {
	level := r.Level
	if demoted(r.Message) && level > slog.LevelDebug {
		level = slog.LevelDebug
		if !h.next.Enabled(ctx, level) {
			return nil
		}
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactPacket(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h mochiLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for i, a := range as {
		as[i] = redactPacket(a)
	}
	return mochiLogHandler{next: h.next.WithAttrs(as)}
}

func (h mochiLogHandler) WithGroup(name string) slog.Handler {
	return mochiLogHandler{next: h.next.WithGroup(name)}
}

// redactPacket replaces a packet value by a summary without payload or properties.
func redactPacket(a slog.Attr) slog.Attr {
	pk, ok := a.Value.Any().(packets.Packet)
	if !ok {
		return a
	}
	return slog.Group(a.Key,
		slog.String("type", packets.PacketNames[pk.FixedHeader.Type]),
		slog.String("topic", pk.TopicName),
		slog.Int("packet_id", int(pk.PacketID)),
		slog.Int("qos", int(pk.FixedHeader.Qos)),
		slog.Int("payload_bytes", len(pk.Payload)),
	)
}
