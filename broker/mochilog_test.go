package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

type refuseHook struct{ mqtt.HookBase }

func (refuseHook) ID() string           { return "refuse" }
func (refuseHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (refuseHook) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	return pk, packets.ErrNotAuthorized
}

// TestMochiLogsNoPayloads runs mochi's own logging of a refused publish through our handler:
// the payload (someone's heart rate) never reaches the log, the topic does, and the
// refusal is not an ERROR line.
func TestMochiLogsNoPayloads(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
		hooks := &mqtt.Hooks{Log: newMochiLogger(log)}
		if err := hooks.Add(&refuseHook{}, nil); err != nil {
			t.Fatal(err)
		}
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   "devices/dev_1/telemetry/heart_rate",
			PacketID:    7,
			Payload:     []byte(`{"seq":1,"bpm":"SECRET-71"}`),
			Properties:  packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "SECRET-PROP"}}},
		}
		if _, err := hooks.OnPublish(&mqtt.Client{ID: "dev_1"}, pk); err == nil {
			t.Fatal("the refusing hook did not refuse")
		}
		out := buf.String()
		if strings.Contains(out, "SECRET") {
			t.Fatalf("payload or properties logged at %v: %s", level, out)
		}
		if strings.Contains(out, `"level":"ERROR"`) {
			t.Fatalf("refusal logged as an error: %s", out)
		}
		if level == slog.LevelDebug && (!strings.Contains(out, "devices/dev_1/telemetry/heart_rate") || !strings.Contains(out, `"payload_bytes":27`)) {
			t.Fatalf("debug line lost the topic or size: %s", out)
		}
		if level == slog.LevelInfo && out != "" {
			t.Fatalf("demoted line still written at info: %s", out)
		}
	}
}
