package devices

import "fmt"

// Type is a kind of device. The set is closed: the hub refuses types it does not know, so a
// new kind of gadget needs a release that teaches every part of the system about it.
type Type string

// Device types.
const (
	Phone  Type = "phone"
	Tablet Type = "tablet"
	Band   Type = "band"
	Scale  Type = "scale"
	Router Type = "router"
)

// Telemetry stream names. A stream name is one topic level, so these must stay free of '/',
// '+' and '#'.
const (
	StreamSteps     = "steps"
	StreamHeartRate = "heart_rate"
	StreamSleep     = "sleep"
	StreamBattery   = "battery"
	StreamWeight    = "weight"
	StreamLocation  = "location"
	StreamStatus    = "status"
)

// Types lists every device type, in a stable order (for documentation, forms and tests).
func Types() []Type { return []Type{Phone, Tablet, Band, Scale, Router} }

// ParseType returns the Type named s. Matching is exact (lower case): types travel in IDs,
// logs and SQL, where one spelling per type keeps comparisons trivial.
func ParseType(s string) (Type, error) {
	t := Type(s)
	if _, ok := Info(t); !ok {
		return "", fmt.Errorf("unknown device type %q", s)
	}
	return t, nil
}

// TypeInfo says what a device type is allowed to do.
type TypeInfo struct {
	// Controller devices (phones, tablets) run the owner's app: they bind gadgets to the
	// account, pair with gadgets and receive the account's sync stream.
	Controller bool
	// Streams are the telemetry streams the type may publish; anything else is refused.
	Streams []string
	// Pairable gadgets can be paired with a controller of the same account.
	Pairable bool
}

// Info returns what type t may do, and false for an unknown type. The table is built on each
// call (rather than kept in a package variable) so no caller can change it for everyone else.
func Info(t Type) (TypeInfo, bool) {
	switch t {
	case Phone, Tablet:
		return TypeInfo{Controller: true, Streams: []string{StreamLocation, StreamBattery}}, true
	case Band:
		return TypeInfo{Pairable: true, Streams: []string{StreamSteps, StreamHeartRate, StreamSleep, StreamBattery}}, true
	case Scale:
		return TypeInfo{Pairable: true, Streams: []string{StreamWeight, StreamBattery}}, true
	case Router:
		return TypeInfo{Streams: []string{StreamStatus}}, true
	}
	return TypeInfo{}, false
}

// IsController reports whether t is a controller type.
func IsController(t Type) bool {
	i, ok := Info(t)
	return ok && i.Controller
}

// CanPair reports whether a device of type a may pair with one of type b: exactly one of them
// is a controller and the other a pairable gadget, in either order.
func CanPair(a, b Type) bool {
	ia, okA := Info(a)
	ib, okB := Info(b)
	if !okA || !okB {
		return false
	}
	return ia.Controller && ib.Pairable || ib.Controller && ia.Pairable
}

// StreamAllowed reports whether a device of type t may publish telemetry on stream.
func StreamAllowed(t Type, stream string) bool {
	i, ok := Info(t)
	if !ok {
		return false
	}
	for _, s := range i.Streams {
		if s == stream {
			return true
		}
	}
	return false
}

// AccountWide reports whether stream, when published by a device that is not a pairable gadget
// (a phone, tablet or router), is delivered to every controller of the account. Streams of
// pairable gadgets go only to the controllers they are paired with, even when the name is the
// same ("battery"): use AccountWideFor when the source type is known.
func AccountWide(stream string) bool {
	switch stream {
	case StreamLocation, StreamBattery, StreamStatus:
		return true
	}
	return false
}

// AccountWideFor reports whether telemetry of type t on stream goes to all controllers of the
// account (true) or only to the controllers paired with the source device (false).
func AccountWideFor(t Type, stream string) bool {
	i, ok := Info(t)
	if !ok || i.Pairable || !StreamAllowed(t, stream) {
		return false
	}
	return AccountWide(stream)
}
