package devices

import (
	"encoding/json"
	"fmt"
	"time"
)

// MaxClockSkew is how far in the future a sample's ts may be: device clocks drift and time
// zones get misconfigured, but a sample dated next week would sort wrongly forever.
const MaxClockSkew = 24 * time.Hour

// Telemetry is one validated sample.
type Telemetry struct {
	// Seq is the device's sequence number for the stream, from 1; the hub uses it to drop
	// duplicates of QoS 1 redeliveries.
	Seq uint64
	// TS is when the sample was taken.
	TS time.Time
	// Stream is the stream name.
	Stream string
	// Body is the stream's fields (without seq and ts) re-encoded from the validated struct,
	// so what is stored and relayed is canonical and carries nothing the device added.
	Body json.RawMessage
}

// Telemetry payloads. Every stream's payload is a JSON object with seq and ts plus the
// stream's fields; pointers mark fields that are required (nil after decoding means absent).

type header struct {
	// Seq is a sequence number ≥ 1.
	Seq *uint64 `json:"seq"`
	// TS is an RFC 3339 timestamp.
	TS *time.Time `json:"ts"`
}

// StepsSample is the band's steps stream.
type StepsSample struct {
	// Count is the number of steps since the previous sample, 0..100000.
	Count int64 `json:"count"`
}

// HeartRateSample is the band's heart_rate stream.
type HeartRateSample struct {
	// BPM is beats per minute, 20..250.
	BPM int64 `json:"bpm"`
}

// SleepSample is the band's sleep stream.
type SleepSample struct {
	// Minutes spent in Stage since the previous sample, 0..1440.
	Minutes int64 `json:"minutes"`
	// Stage is "light", "deep", "rem" or "awake".
	Stage string `json:"stage"`
}

// BatterySample is the battery stream of any device.
type BatterySample struct {
	// Percent is the charge, 0..100.
	Percent float64 `json:"percent"`
}

// WeightSample is the scale's weight stream.
type WeightSample struct {
	// KG is the weight in kilograms, 2..400.
	KG float64 `json:"kg"`
	// BodyFatPct is the body fat percentage, 1..75, when the scale measures it.
	BodyFatPct *float64 `json:"body_fat_pct,omitempty"`
	// ImpedanceOhm is the measured body impedance, 100..2000, when the scale measures it.
	ImpedanceOhm *float64 `json:"impedance_ohm,omitempty"`
	// Person is who was weighed (a profile name or ID on the scale), 1..64 bytes.
	Person string `json:"person"`
}

// LocationSample is the phone's and tablet's location stream.
type LocationSample struct {
	// Lat is the latitude in degrees, -90..90.
	Lat float64 `json:"lat"`
	// Lon is the longitude in degrees, -180..180.
	Lon float64 `json:"lon"`
	// AccuracyM is the radius of uncertainty in meters, 0..100000.
	AccuracyM float64 `json:"accuracy_m"`
}

// StatusSample is the router's status stream.
type StatusSample struct {
	// Clients is the number of connected clients, 0..1000.
	Clients int64 `json:"clients"`
}

// The wire forms embed header and use pointers so a missing required field is told apart from
// a zero one.
type (
	stepsWire struct {
		header
		Count *int64 `json:"count"`
	}
	heartRateWire struct {
		header
		BPM *int64 `json:"bpm"`
	}
	sleepWire struct {
		header
		Minutes *int64  `json:"minutes"`
		Stage   *string `json:"stage"`
	}
	batteryWire struct {
		header
		Percent *float64 `json:"percent"`
	}
	weightWire struct {
		header
		KG           *float64 `json:"kg"`
		BodyFatPct   *float64 `json:"body_fat_pct"`
		ImpedanceOhm *float64 `json:"impedance_ohm"`
		Person       *string  `json:"person"`
	}
	locationWire struct {
		header
		Lat       *float64 `json:"lat"`
		Lon       *float64 `json:"lon"`
		AccuracyM *float64 `json:"accuracy_m"`
	}
	statusWire struct {
		header
		Clients *int64 `json:"clients"`
	}
)

func intIn(field string, v *int64, lo, hi int64) error {
	if v == nil {
		return fieldErr(field, "required")
	}
	if *v < lo || *v > hi {
		return fieldErr(field, "must be %d..%d", lo, hi)
	}
	return nil
}

func floatIn(field string, v *float64, lo, hi float64, required bool) error {
	if v == nil {
		if required {
			return fieldErr(field, "required")
		}
		return nil
	}
	if !(*v >= lo && *v <= hi) {
		return fieldErr(field, "must be %g..%g", lo, hi)
	}
	return nil
}

// ValidateTelemetry checks a telemetry payload of stream from a device of type t, with now as
// the hub's current time, and returns the sample with a canonical body. Errors are
// *DecodeError naming the field.
func ValidateTelemetry(t Type, stream string, payload []byte, now time.Time) (Telemetry, error) {
	if !StreamAllowed(t, stream) {
		return Telemetry{}, fieldErr("", "a %s does not publish stream %q", t, truncate(stream))
	}
	var (
		h    *header
		body func() any
		err  error
	)
	switch stream {
	case StreamSteps:
		var w stepsWire
		if err = decodeTelemetry(payload, &w); err == nil {
			h, err = &w.header, intIn("count", w.Count, 0, 100000)
			body = func() any { return StepsSample{Count: deref(w.Count)} }
		}
	case StreamHeartRate:
		var w heartRateWire
		if err = decodeTelemetry(payload, &w); err == nil {
			h, err = &w.header, intIn("bpm", w.BPM, 20, 250)
			body = func() any { return HeartRateSample{BPM: deref(w.BPM)} }
		}
	case StreamSleep:
		var w sleepWire
		if err = decodeTelemetry(payload, &w); err == nil {
			h, err = &w.header, intIn("minutes", w.Minutes, 0, 1440)
			if err == nil {
				switch s := deref(w.Stage); s {
				case "light", "deep", "rem", "awake":
				default:
					err = fieldErr("stage", `must be "light", "deep", "rem" or "awake"`)
				}
			}
			body = func() any { return SleepSample{Minutes: deref(w.Minutes), Stage: deref(w.Stage)} }
		}
	case StreamBattery:
		var w batteryWire
		if err = decodeTelemetry(payload, &w); err == nil {
			h, err = &w.header, floatIn("percent", w.Percent, 0, 100, true)
			body = func() any { return BatterySample{Percent: deref(w.Percent)} }
		}
	case StreamWeight:
		var w weightWire
		if err = decodeTelemetry(payload, &w); err == nil {
			h = &w.header
			err = firstErr(
				floatIn("kg", w.KG, 2, 400, true),
				floatIn("body_fat_pct", w.BodyFatPct, 1, 75, false),
				floatIn("impedance_ohm", w.ImpedanceOhm, 100, 2000, false),
			)
			if err == nil {
				if p := deref(w.Person); p == "" || len(p) > 64 || !printable(p) {
					err = fieldErr("person", "must be 1..64 bytes of printable text")
				}
			}
			body = func() any {
				return WeightSample{KG: deref(w.KG), BodyFatPct: w.BodyFatPct, ImpedanceOhm: w.ImpedanceOhm, Person: deref(w.Person)}
			}
		}
	case StreamLocation:
		var w locationWire
		if err = decodeTelemetry(payload, &w); err == nil {
			h = &w.header
			err = firstErr(
				floatIn("lat", w.Lat, -90, 90, true),
				floatIn("lon", w.Lon, -180, 180, true),
				floatIn("accuracy_m", w.AccuracyM, 0, 100000, true),
			)
			body = func() any { return LocationSample{Lat: deref(w.Lat), Lon: deref(w.Lon), AccuracyM: deref(w.AccuracyM)} }
		}
	case StreamStatus:
		var w statusWire
		if err = decodeTelemetry(payload, &w); err == nil {
			h, err = &w.header, intIn("clients", w.Clients, 0, 1000)
			body = func() any { return StatusSample{Clients: deref(w.Clients)} }
		}
	default:
		// StreamAllowed and this switch disagree: a stream was added to the table only.
		return Telemetry{}, fmt.Errorf("stream %q has no schema", stream)
	}
	if err != nil {
		return Telemetry{}, err
	}
	if err := checkHeader(h, now); err != nil {
		return Telemetry{}, err
	}
	b, err := json.Marshal(body())
	if err != nil {
		return Telemetry{}, fmt.Errorf("encode %s body: %w", stream, err)
	}
	return Telemetry{Seq: *h.Seq, TS: h.TS.UTC(), Stream: stream, Body: b}, nil
}

func checkHeader(h *header, now time.Time) error {
	if h.Seq == nil || *h.Seq < 1 {
		return fieldErr("seq", "required, at least 1")
	}
	if h.TS == nil {
		return fieldErr("ts", "required (RFC 3339)")
	}
	if h.TS.After(now.Add(MaxClockSkew)) {
		return fieldErr("ts", "more than %v in the future", MaxClockSkew)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
