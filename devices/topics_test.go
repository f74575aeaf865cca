package devices

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestTopicBuilders(t *testing.T) {
	tests := []struct{ got, want string }{
		{TelemetryTopic("d1", "steps"), "devices/d1/telemetry/steps"},
		{RequestTopic("d1"), "devices/d1/req"},
		{ResponseTopic("d1"), "devices/d1/res"},
		{CommandTopic("d1"), "devices/d1/commands"},
		{SyncTopic("a1", "d1", "weight"), "accounts/a1/sync/d1/weight"},
		{SyncFilter("a1"), "accounts/a1/sync/#"},
		{DeviceFilter("d1"), "devices/d1/#"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseDeviceTopic(t *testing.T) {
	tests := []struct {
		topic          string
		id, kind, rest string
		ok             bool
	}{
		{"devices/d1/req", "d1", KindRequest, "", true},
		{"devices/d1/res", "d1", KindResponse, "", true},
		{"devices/d1/commands", "d1", KindCommands, "", true},
		{"devices/d1/telemetry/steps", "d1", KindTelemetry, "steps", true},
		{"devices/d1/telemetry", "", "", "", false},
		{"devices/d1/telemetry/a/b", "", "", "", false},
		{"devices/d1/req/x", "", "", "", false},
		{"devices/d$1/req", "", "", "", false},
		{"devices//req", "", "", "", false},
		{"devices/d1/other", "", "", "", false},
		{"accounts/a/sync/d/s", "", "", "", false},
		{"devices/d1/telemetry/st+", "", "", "", false},
		{"devices/d1/telemetry/", "", "", "", false},
		{"devices/d1/", "", "", "", false},
		{"devices/d1", "", "", "", false},
		{"devices", "", "", "", false},
		{"devices/d1/req/", "", "", "", false},
		{"/devices/d1/req", "", "", "", false},
	}
	for _, tt := range tests {
		id, kind, rest, ok := ParseDeviceTopic(tt.topic)
		if id != tt.id || kind != tt.kind || rest != tt.rest || ok != tt.ok {
			t.Errorf("ParseDeviceTopic(%q) = %q %q %q %v, want %q %q %q %v", tt.topic, id, kind, rest, ok, tt.id, tt.kind, tt.rest, tt.ok)
		}
	}
}

func TestValidTopicNameAndFilter(t *testing.T) {
	tests := []struct {
		s               string
		nameErr, filErr error // nil: valid
	}{
		{"a/b", nil, nil},
		{"a//b", nil, nil},
		{"/", nil, nil},
		{"a/+/b", ErrWildcard, nil},
		{"a/#", ErrWildcard, nil},
		{"#", ErrWildcard, nil},
		{"a/#/b", ErrWildcard, ErrWildcardPlace},
		{"a/b#", ErrWildcard, ErrWildcardPlace},
		{"a+/b", ErrWildcard, ErrWildcardPlace},
		{"", ErrEmpty, ErrEmpty},
		{"a\x00", ErrControlChar, ErrControlChar},
		{"a\nb", ErrControlChar, ErrControlChar},
		{"a\u009fb", ErrControlChar, ErrControlChar},
		{"a\xffb", ErrInvalidUTF8, ErrInvalidUTF8},
		{strings.Repeat("a", MaxTopicLength+1), ErrTooLong, ErrTooLong},
		{strings.Repeat("a/", MaxTopicLevels), ErrTooManyLevels, ErrTooManyLevels},
		{strings.Repeat("a/", MaxTopicLevels-1) + "a", nil, nil},
		{"$share/g/a/#", ErrWildcard, nil},
		{"$share/g", nil, ErrSharedNoFilter},
		{"$share/g/", nil, ErrSharedNoFilter},
		{"$share/+/a", ErrWildcard, ErrSharedGroup},
		{"$share/g/a/#/b", ErrWildcard, ErrWildcardPlace},
		{"héllo/wörld", nil, nil},
	}
	for _, tt := range tests {
		if err := ValidTopicName(tt.s); !errors.Is(err, tt.nameErr) || (err == nil) != (tt.nameErr == nil) {
			t.Errorf("ValidTopicName(%q) = %v, want %v", tt.s, err, tt.nameErr)
		}
		if err := ValidFilter(tt.s); !errors.Is(err, tt.filErr) || (err == nil) != (tt.filErr == nil) {
			t.Errorf("ValidFilter(%q) = %v, want %v", tt.s, err, tt.filErr)
		}
	}
}

func TestValidIdentifier(t *testing.T) {
	for _, s := range []string{"d", "dev_abc234", "A-b.c_9", strings.Repeat("x", 64)} {
		if err := ValidIdentifier(s); err != nil {
			t.Errorf("ValidIdentifier(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{"", strings.Repeat("x", 65), "a+b", "a#", "a/b", "$SYS", "a\x00", "a b", "é", "a\n", "a:b"} {
		if err := ValidIdentifier(s); err == nil {
			t.Errorf("ValidIdentifier(%q) = nil, want an error", s)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/b", "a/b/c", false},
		{"+/+", "/x", true},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		sup, sub string
		want     bool
	}{
		{"a/#", "a/#", true},
		{"a/#", "a", true},
		{"a/#", "a/+/c", true},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/b", "a/+", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+/#", "a/#", false},
		{"a/#", "+/#", false},
		{"a/#", "#", false},
	}
	for _, tt := range tests {
		if got := covers(tt.sup, tt.sub); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.sup, tt.sub, got, tt.want)
		}
	}
}

// FuzzParseDeviceTopicMatchesLevels: ParseDeviceTopic (strings.Cut, no allocation) agrees with
// a plain reading of the topic's levels on every input.
func FuzzParseDeviceTopicMatchesLevels(f *testing.F) {
	for _, s := range []string{"devices/d1/req", "devices/d1/telemetry/steps", "devices/d1/telemetry/a/b", "devices//req", "devices/d1/", "a/b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		id, kind, rest, ok := ParseDeviceTopic(topic)
		wid, wkind, wrest, wok := "", "", "", false
		l := strings.Split(topic, "/")
		if len(topic) <= MaxTopicLength && len(l) >= 3 && l[0] == DevicesPrefix && ValidIdentifier(l[1]) == nil {
			switch l[2] {
			case KindRequest, KindResponse, KindCommands, KindSync:
				if len(l) == 3 {
					wid, wkind, wok = l[1], l[2], true
				}
			case KindTelemetry:
				if len(l) == 4 && ValidIdentifier(l[3]) == nil {
					wid, wkind, wrest, wok = l[1], l[2], l[3], true
				}
			}
		}
		if id != wid || kind != wkind || rest != wrest || ok != wok {
			t.Fatalf("ParseDeviceTopic(%q) = %q %q %q %v, levels say %q %q %q %v", topic, id, kind, rest, ok, wid, wkind, wrest, wok)
		}
	})
}

// FuzzCheckTextMatchesRuneRules: checkText's byte-by-byte path for ASCII topics accepts and
// refuses exactly what decoding every rune does (the rules it replaced on the hot path), with
// the same error and the same level count.
func FuzzCheckTextMatchesRuneRules(f *testing.F) {
	for _, s := range []string{"devices/d1/telemetry/steps", "a\x7fb", "a\x00", "tab\there", "é/ü", "a/\u0085", "\uFFFD", "\xff/x", "a\x01é", strings.Repeat("a/", MaxTopicLevels)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := func() error {
			if s == "" {
				return ErrEmpty
			}
			if len(s) > MaxTopicLength {
				return ErrTooLong
			}
			if !utf8.ValidString(s) {
				return ErrInvalidUTF8
			}
			for _, r := range s {
				if r == 0 || unicode.IsControl(r) || r == utf8.RuneError {
					return ErrControlChar
				}
			}
			if strings.Count(s, "/")+1 > MaxTopicLevels {
				return ErrTooManyLevels
			}
			return nil
		}()
		got := checkText("topic", s)
		if (got == nil) != (want == nil) || (want != nil && !errors.Is(got, want)) {
			t.Fatalf("checkText(%q) = %v, want %v", s, got, want)
		}
	})
}
