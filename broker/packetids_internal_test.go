package broker

import "testing"

// TestOwnTelemetry: only the client's own telemetry topics skip the packet ID reservation.
func TestOwnTelemetry(t *testing.T) {
	for _, tc := range []struct {
		id, topic string
		want      bool
	}{
		{"dev_a", "devices/dev_a/telemetry/steps", true},
		{"dev_a", "devices/dev_ab/telemetry/steps", false},
		{"dev_a", "devices/dev_a/req", false},
		{"dev_a", "devices/dev_b/telemetry/steps", false},
		{"dev_a", "devices/dev_a/telemetry", false},
		{"dev_a", "accounts/acc/telemetry/steps", false},
	} {
		if got := ownTelemetry(tc.id, tc.topic); got != tc.want {
			t.Errorf("ownTelemetry(%q, %q) = %v", tc.id, tc.topic, got)
		}
	}
}
