package devices

import "testing"

func TestParseType(t *testing.T) {
	for _, ty := range Types() {
		got, err := ParseType(string(ty))
		if err != nil || got != ty {
			t.Errorf("ParseType(%q) = %q, %v", ty, got, err)
		}
	}
	for _, s := range []string{"", "Phone", "toaster", "phone "} {
		if _, err := ParseType(s); err == nil {
			t.Errorf("ParseType(%q) succeeded", s)
		}
	}
}

func TestCanPair(t *testing.T) {
	tests := []struct {
		a, b Type
		want bool
	}{
		{Phone, Band, true}, {Band, Phone, true}, {Tablet, Scale, true}, {Scale, Phone, true},
		{Phone, Tablet, false}, {Band, Scale, false}, {Phone, Router, false}, {Router, Band, false},
		{Phone, Phone, false}, {Band, Band, false}, {Phone, "toaster", false},
	}
	for _, tt := range tests {
		if got := CanPair(tt.a, tt.b); got != tt.want {
			t.Errorf("CanPair(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestStreams(t *testing.T) {
	tests := []struct {
		t           Type
		stream      string
		allowed     bool
		accountWide bool
	}{
		{Band, StreamSteps, true, false}, {Band, StreamHeartRate, true, false}, {Band, StreamSleep, true, false},
		{Band, StreamBattery, true, false}, {Band, StreamWeight, false, false},
		{Scale, StreamWeight, true, false}, {Scale, StreamBattery, true, false}, {Scale, StreamSteps, false, false},
		{Phone, StreamLocation, true, true}, {Phone, StreamBattery, true, true}, {Tablet, StreamLocation, true, true},
		{Phone, StreamSteps, false, false}, {Router, StreamStatus, true, true}, {Router, StreamBattery, false, false},
		{"toaster", StreamBattery, false, false},
	}
	for _, tt := range tests {
		if got := StreamAllowed(tt.t, tt.stream); got != tt.allowed {
			t.Errorf("StreamAllowed(%s, %s) = %v", tt.t, tt.stream, got)
		}
		if got := AccountWideFor(tt.t, tt.stream); got != tt.accountWide {
			t.Errorf("AccountWideFor(%s, %s) = %v", tt.t, tt.stream, got)
		}
	}
}

func TestInfoIsACopy(t *testing.T) {
	i, _ := Info(Band)
	i.Streams[0] = "hacked"
	if !StreamAllowed(Band, StreamSteps) {
		t.Fatal("changing Info's result changed the table")
	}
}
