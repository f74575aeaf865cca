package devices

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// A telemetry sample is a small flat JSON object, and every one a device publishes is
// checked on the broker's read goroutine before it is committed: encoding/json's strict
// decoder spent about 4 µs and 13 allocations on one (BenchmarkValidateTelemetry), a tenth
// of a core at 20,000 samples/s on the two cores the whole hub shares. decodeFlat reads the
// plain form devices send (compact, no escapes, no nulls, each field once) without it, and
// gives up on anything else, which decodeStrict then decodes (and refuses with its precise
// error): the result is the same either way (FuzzDecodeFlatMatchesStrict).

// flatSetter is a telemetry wire struct that decodeFlat can fill: setFlat stores one member
// and reports false for a key the struct does not have, a value it does not take in its
// plain form, or a key seen before.
type flatSetter interface {
	setFlat(key, raw []byte) bool
}

// decodeTelemetry decodes a telemetry payload into w as decodeStrict does.
func decodeTelemetry[T any, PT interface {
	*T
	flatSetter
}](b []byte, w PT) error {
	if decodeFlat(b, MaxTelemetrySize, w) {
		return nil
	}
	// What decodeFlat filled before it gave up must not show through.
	*w = *new(T)
	return decodeStrict(b, w, MaxTelemetrySize)
}

// decodeFlat fills s from b when b is one compact JSON object whose values are numbers and
// strings without escapes, and reports whether it did. When it reports false, s may be
// partly filled.
func decodeFlat(b []byte, max int, s flatSetter) bool {
	n := len(b)
	if n > max || n < 2 || b[0] != '{' || b[n-1] != '}' {
		return false
	}
	if n == 2 {
		return true
	}
	for i := 1; ; {
		if b[i] != '"' {
			return false
		}
		end := plainStringEnd(b, i)
		if end < 0 {
			return false
		}
		key := b[i+1 : end]
		i = end + 1
		if i >= n || b[i] != ':' {
			return false
		}
		i++
		if i >= n {
			return false
		}
		var raw []byte
		if b[i] == '"' {
			end := plainStringEnd(b, i)
			if end < 0 {
				return false
			}
			raw, i = b[i:end+1], end+1
		} else {
			j := i
			for j < n && isNumberByte(b[j]) {
				j++
			}
			raw, i = b[i:j], j
		}
		if len(raw) == 0 || !s.setFlat(key, raw) || i >= n {
			return false
		}
		switch b[i] {
		case ',':
			i++
			if i >= n {
				return false
			}
		case '}':
			return i == n-1
		default:
			return false
		}
	}
}

// plainStringEnd returns the index of the quote that closes the string opening at b[i], or
// -1 when the string has an escape or a control character (which JSON forbids unescaped)
// or does not end.
func plainStringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j
		case c == '\\' || c < 0x20:
			return -1
		}
	}
	return -1
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// jsonNumber reports whether raw is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and whether it has a fraction or exponent.
func jsonNumber(raw []byte) (ok, integer bool) {
	i, n := 0, len(raw)
	if i < n && raw[i] == '-' {
		i++
	}
	switch {
	case i < n && raw[i] == '0':
		i++
	case i < n && raw[i] >= '1' && raw[i] <= '9':
		for i < n && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
	default:
		return false, false
	}
	integer = true
	if i < n && raw[i] == '.' {
		integer = false
		i++
		if i >= n || raw[i] < '0' || raw[i] > '9' {
			return false, false
		}
		for i < n && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
	}
	if i < n && (raw[i] == 'e' || raw[i] == 'E') {
		integer = false
		i++
		if i < n && (raw[i] == '+' || raw[i] == '-') {
			i++
		}
		if i >= n || raw[i] < '0' || raw[i] > '9' {
			return false, false
		}
		for i < n && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
	}
	return i == n, integer
}

// The setters below take a value only in a form encoding/json turns into the same Go
// value, and only once.

func flatUint(raw []byte, dst **uint64) bool {
	if *dst != nil || raw[0] == '-' {
		return false
	}
	if ok, integer := jsonNumber(raw); !ok || !integer {
		return false
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return false
	}
	*dst = &v
	return true
}

func flatInt(raw []byte, dst **int64) bool {
	if *dst != nil {
		return false
	}
	if ok, integer := jsonNumber(raw); !ok || !integer {
		return false
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return false
	}
	*dst = &v
	return true
}

func flatFloat(raw []byte, dst **float64) bool {
	if *dst != nil {
		return false
	}
	if ok, _ := jsonNumber(raw); !ok {
		return false
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return false
	}
	*dst = &v
	return true
}

func flatString(raw []byte, dst **string) bool {
	if *dst != nil || raw[0] != '"' || !utf8.Valid(raw[1:len(raw)-1]) {
		return false
	}
	v := string(raw[1 : len(raw)-1])
	*dst = &v
	return true
}

// flatTime hands the quoted string to time.Time's own UnmarshalJSON, as encoding/json does.
func flatTime(raw []byte, dst **time.Time) bool {
	if *dst != nil || raw[0] != '"' {
		return false
	}
	var t time.Time
	if err := t.UnmarshalJSON(raw); err != nil {
		return false
	}
	*dst = &t
	return true
}

func (h *header) setFlat(key, raw []byte) bool {
	switch string(key) {
	case "seq":
		return flatUint(raw, &h.Seq)
	case "ts":
		return flatTime(raw, &h.TS)
	}
	return false
}

func (w *stepsWire) setFlat(key, raw []byte) bool {
	if string(key) == "count" {
		return flatInt(raw, &w.Count)
	}
	return w.header.setFlat(key, raw)
}

func (w *heartRateWire) setFlat(key, raw []byte) bool {
	if string(key) == "bpm" {
		return flatInt(raw, &w.BPM)
	}
	return w.header.setFlat(key, raw)
}

func (w *sleepWire) setFlat(key, raw []byte) bool {
	switch string(key) {
	case "minutes":
		return flatInt(raw, &w.Minutes)
	case "stage":
		return flatString(raw, &w.Stage)
	}
	return w.header.setFlat(key, raw)
}

func (w *batteryWire) setFlat(key, raw []byte) bool {
	if string(key) == "percent" {
		return flatFloat(raw, &w.Percent)
	}
	return w.header.setFlat(key, raw)
}

func (w *weightWire) setFlat(key, raw []byte) bool {
	switch string(key) {
	case "kg":
		return flatFloat(raw, &w.KG)
	case "body_fat_pct":
		return flatFloat(raw, &w.BodyFatPct)
	case "impedance_ohm":
		return flatFloat(raw, &w.ImpedanceOhm)
	case "person":
		return flatString(raw, &w.Person)
	}
	return w.header.setFlat(key, raw)
}

func (w *locationWire) setFlat(key, raw []byte) bool {
	switch string(key) {
	case "lat":
		return flatFloat(raw, &w.Lat)
	case "lon":
		return flatFloat(raw, &w.Lon)
	case "accuracy_m":
		return flatFloat(raw, &w.AccuracyM)
	}
	return w.header.setFlat(key, raw)
}

func (w *statusWire) setFlat(key, raw []byte) bool {
	if string(key) == "clients" {
		return flatInt(raw, &w.Clients)
	}
	return w.header.setFlat(key, raw)
}
