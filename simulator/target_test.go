package simulator

import (
	"testing"
)

// TestParseHub: the --hub value names both addresses, each with or without a scheme; anything
// else is refused with a message, never half-parsed.
func TestParseHub(t *testing.T) {
	for _, tc := range []struct {
		in, mqtt, http string
	}{
		{"mqtt=127.0.0.1:1883,http=127.0.0.1:8080", "tcp://127.0.0.1:1883", "http://127.0.0.1:8080"},
		{" http=localhost:8080 , mqtt=localhost:1883 ", "tcp://localhost:1883", "http://localhost:8080"},
		{"mqtt=ssl://hub.example:8883,http=https://hub.example/", "ssl://hub.example:8883", "https://hub.example"},
		{"mqtt=ws://127.0.0.1:8083/mqtt,http=http://127.0.0.1:8080//", "ws://127.0.0.1:8083/mqtt", "http://127.0.0.1:8080"},
	} {
		got, err := ParseHub(tc.in)
		if err != nil {
			t.Errorf("ParseHub(%q): %v", tc.in, err)
			continue
		}
		if got.MQTT != tc.mqtt || got.HTTP != tc.http || got.AdminToken != "" {
			t.Errorf("ParseHub(%q) = %+v, want mqtt %s http %s", tc.in, got, tc.mqtt, tc.http)
		}
	}
	for _, in := range []string{
		"",
		"127.0.0.1:1883",
		"mqtt=127.0.0.1:1883",
		"http=127.0.0.1:8080",
		"mqtt=,http=127.0.0.1:8080",
		"mqtt=127.0.0.1:1883,http=",
		"mqtt=127.0.0.1:1883,http=127.0.0.1:8080,ws=127.0.0.1:8083",
		"mqtt=127.0.0.1:1883;http=127.0.0.1:8080",
	} {
		if got, err := ParseHub(in); err == nil {
			t.Errorf("ParseHub(%q) = %+v, want an error", in, got)
		}
	}
}
