package devices

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The topic scheme. Every topic devicehub uses is built by one of the functions below and
// taken apart by ParseDeviceTopic, so the scheme lives in one file.
//
//	devices/{device}/telemetry/{stream}      device → hub, QoS 1
//	devices/{device}/req                     device → hub, QoS 1: requests (Request)
//	devices/{device}/res                     hub → device, QoS 1: responses (Response)
//	devices/{device}/commands                hub → device, QoS 1: events and commands (Command)
//	devices/{device}/sync                    hub → one controller, QoS 1: its sync stream (SyncEntry)
//	accounts/{account}/…                     reserved: controllers may subscribe, the hub publishes nothing
const (
	DevicesPrefix  = "devices"
	AccountsPrefix = "accounts"

	KindTelemetry = "telemetry"
	KindRequest   = "req"
	KindResponse  = "res"
	KindCommands  = "commands"
	KindSync      = "sync"
)

// Limits on topics and identifiers. They are far above what the scheme needs and low enough
// that a hostile client cannot make the broker or the checker do much work per packet.
const (
	MaxTopicLength      = 256
	MaxTopicLevels      = 16
	MaxIdentifierLength = 64
)

// TelemetryTopic is where device deviceID publishes samples of stream.
func TelemetryTopic(deviceID, stream string) string {
	return DevicesPrefix + "/" + deviceID + "/" + KindTelemetry + "/" + stream
}

// RequestTopic is where device id publishes requests to the hub.
func RequestTopic(id string) string { return DevicesPrefix + "/" + id + "/" + KindRequest }

// ResponseTopic is where the hub answers device id's requests.
func ResponseTopic(id string) string { return DevicesPrefix + "/" + id + "/" + KindResponse }

// CommandTopic is where the hub sends events and commands to device id.
func CommandTopic(id string) string { return DevicesPrefix + "/" + id + "/" + KindCommands }

// ControllerSyncTopic is where the hub relays the sync log to controller id. Each controller
// has its own topic because each has its own cursor and its own entitlement (only the gadgets
// paired with it), which one account-wide topic could not honour.
func ControllerSyncTopic(id string) string { return DevicesPrefix + "/" + id + "/" + KindSync }

// DeviceFilter is the filter covering every topic of device id (devices/{id}/#).
func DeviceFilter(id string) string { return DevicesPrefix + "/" + id + "/#" }

// SyncTopic names accounts/{acc}/sync/{source}/{stream}, a reserved topic of the account:
// its controllers may subscribe, but the hub relays to each controller's own sync topic
// (ControllerSyncTopic) and publishes nothing here.
func SyncTopic(accountID, sourceDeviceID, stream string) string {
	return AccountsPrefix + "/" + accountID + "/" + KindSync + "/" + sourceDeviceID + "/" + stream
}

// SyncFilter is the filter a controller of accountID subscribes to for the account's sync
// stream (accounts/{acc}/sync/#).
func SyncFilter(accountID string) string {
	return AccountsPrefix + "/" + accountID + "/" + KindSync + "/#"
}

// ParseDeviceTopic splits a topic of the devices/ tree. kind is one of KindTelemetry,
// KindRequest, KindResponse, KindCommands, KindSync; rest is the stream for telemetry and "" otherwise.
// ok is false for anything else, including topics whose device ID or stream is not a valid
// identifier, so callers can use the parts without further checks.
func ParseDeviceTopic(topic string) (deviceID, kind, rest string, ok bool) {
	if len(topic) > MaxTopicLength {
		return "", "", "", false
	}
	// strings.Cut rather than strings.Split: this runs for every publish, and Split
	// allocates the slice of levels each time.
	prefix, after, ok := strings.Cut(topic, "/")
	if !ok || prefix != DevicesPrefix {
		return "", "", "", false
	}
	deviceID, after, ok = strings.Cut(after, "/")
	if !ok || ValidIdentifier(deviceID) != nil {
		return "", "", "", false
	}
	kind, rest, more := strings.Cut(after, "/")
	switch kind {
	case KindRequest, KindResponse, KindCommands, KindSync:
		if more {
			return "", "", "", false
		}
		return deviceID, kind, "", true
	case KindTelemetry:
		if !more || strings.Contains(rest, "/") || ValidIdentifier(rest) != nil {
			return "", "", "", false
		}
		return deviceID, kind, rest, true
	}
	return "", "", "", false
}

// Errors returned (wrapped) by the validators, for errors.Is.
var (
	ErrEmpty          = errors.New("empty")
	ErrTooLong        = errors.New("too long")
	ErrTooManyLevels  = errors.New("too many levels")
	ErrInvalidUTF8    = errors.New("invalid UTF-8")
	ErrControlChar    = errors.New("NUL or control character")
	ErrWildcard       = errors.New("wildcard in topic name")
	ErrWildcardPlace  = errors.New("wildcard must fill a whole level, '#' only as the last level")
	ErrInvalidChar    = errors.New("character outside [A-Za-z0-9_.-]")
	ErrSharedGroup    = errors.New("invalid shared subscription group")
	ErrSharedNoFilter = errors.New("shared subscription without a filter")
)

// checkText applies the rules common to topic names and filters: non-empty, bounded length and
// depth, valid UTF-8 without NUL or control characters. MQTT only forbids NUL [MQTT-4.7.3-2]
// and discourages controls; we refuse all of them because topics end up in logs and SQL.
func checkText(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s: %w", what, ErrEmpty)
	}
	if len(s) > MaxTopicLength {
		return fmt.Errorf("%s: %d bytes, at most %d: %w", what, len(s), MaxTopicLength, ErrTooLong)
	}
	// Every publish passes here (the ACL): a plain ASCII topic, nearly every one, is checked
	// byte by byte; only one with other bytes is decoded as UTF-8.
	levels := 1
	if !isASCII(s) {
		if err := checkRunes(what, s); err != nil {
			return err
		}
		levels += strings.Count(s, "/")
	} else {
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c < 0x20 || c == 0x7f:
				return fmt.Errorf("%s: %w at %q", what, ErrControlChar, rune(c))
			case c == '/':
				levels++
			}
		}
	}
	if levels > MaxTopicLevels {
		return fmt.Errorf("%s: %d levels, at most %d: %w", what, levels, MaxTopicLevels, ErrTooManyLevels)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// checkRunes refuses invalid UTF-8 and control characters (C0, DEL, C1, and U+FFFD, which
// invalid bytes would decode to).
func checkRunes(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: %w", what, ErrInvalidUTF8)
	}
	for _, r := range s {
		if r == 0 || unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("%s: %w at %q", what, ErrControlChar, r)
		}
	}
	return nil
}

// ValidTopicName checks a topic a client publishes to.
func ValidTopicName(topic string) error {
	if err := checkText("topic", topic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("topic: %w", ErrWildcard) // [MQTT-3.3.2-2]
	}
	return nil
}

// ValidFilter checks a subscription filter: the rules of ValidTopicName, except that '+' may
// fill a whole level and '#' may fill the last level [MQTT-4.7.1-2] [MQTT-4.7.1-3]. A shared
// subscription "$share/{group}/{filter}" must name a group that is a valid identifier and
// carry a valid filter.
func ValidFilter(filter string) error {
	if err := checkText("filter", filter); err != nil {
		return err
	}
	_, inner, _, err := splitShared(filter)
	if err != nil {
		return err
	}
	filter = inner
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if l == "#" && i != len(levels)-1 || l != "#" && l != "+" && strings.ContainsAny(l, "+#") {
			return fmt.Errorf("filter: %w", ErrWildcardPlace)
		}
	}
	return nil
}

// splitShared takes "$share/{group}/{filter}" apart. shared is false when filter is not a
// shared subscription.
func splitShared(filter string) (group, inner string, shared bool, err error) {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return "", filter, false, nil
	}
	group, inner, ok = strings.Cut(rest, "/")
	if err := ValidIdentifier(group); err != nil {
		return "", "", true, fmt.Errorf("filter: %w: %w", ErrSharedGroup, err)
	}
	if !ok || inner == "" {
		return "", "", true, fmt.Errorf("filter: %w", ErrSharedNoFilter) // [MQTT-4.8.2-1]
	}
	return group, inner, true, nil
}

// ValidIdentifier checks a client ID, username, device or account ID, or stream name: 1 to 64
// bytes from [A-Za-z0-9_.-]. The set is deliberately narrow: identifiers are pasted into topic
// levels, so nothing in them may be a separator, a wildcard, '$' or a control character.
func ValidIdentifier(s string) error {
	if s == "" {
		return fmt.Errorf("identifier: %w", ErrEmpty)
	}
	if len(s) > MaxIdentifierLength {
		return fmt.Errorf("identifier: %d bytes, at most %d: %w", len(s), MaxIdentifierLength, ErrTooLong)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("identifier: %w at byte %d", ErrInvalidChar, i)
		}
	}
	return nil
}

// Match reports whether topic name topic matches filter, per MQTT 4.7: '+' matches exactly one
// level, a final '#' matches the parent level and any number of levels below it, and filters
// starting with a wildcard do not match topics starting with '$' [MQTT-4.7.2-1]. Shared
// subscription prefixes are not understood here: pass the inner filter.
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	for i, fl := range f {
		if fl == "#" {
			return i == len(f)-1
		}
		if i >= len(t) {
			return false
		}
		if fl != "+" && fl != t[i] {
			return false
		}
	}
	return len(f) == len(t)
}

// covers reports whether every topic that filter sub could match is also matched by filter
// sup, comparing level by level. Both must be valid filters without a $share prefix.
func covers(sup, sub string) bool {
	p := strings.Split(sup, "/")
	f := strings.Split(sub, "/")
	for i, pl := range p {
		if pl == "#" {
			// "a/#" also matches "a", so sub may end here or go on in any way.
			return true
		}
		if i >= len(f) {
			// sub matches topics with fewer levels than sup requires; only a final '#' in sup
			// (the parent-level rule) would take them.
			return false
		}
		switch fl := f[i]; {
		case fl == "#":
			return false // sub reaches topics sup cannot, at this depth or others
		case pl == "+":
			// a literal or '+' in sub is one level, which '+' in sup takes.
		case fl == "+" || fl != pl:
			return false
		}
	}
	return len(f) == len(p)
}
