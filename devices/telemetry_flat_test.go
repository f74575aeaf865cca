package devices

import (
	"reflect"
	"testing"
)

// flatMatchesStrict checks one wire type: whatever decodeFlat accepts, decodeStrict
// accepts too, into the same value; what decodeTelemetry returns is always decodeStrict's
// answer.
func flatMatchesStrict[T any, PT interface {
	*T
	flatSetter
}](t *testing.T, payload []byte) {
	t.Helper()
	var flat, strict, both T
	flatOK := decodeFlat(payload, MaxTelemetrySize, PT(&flat))
	strictErr := decodeStrict(payload, PT(&strict), MaxTelemetrySize)
	if flatOK && (strictErr != nil || !reflect.DeepEqual(flat, strict)) {
		t.Fatalf("%T %q: decodeFlat gave %+v, decodeStrict %+v (%v)", flat, payload, flat, strict, strictErr)
	}
	err := decodeTelemetry(payload, PT(&both))
	if (err == nil) != (strictErr == nil) || (err != nil && err.Error() != strictErr.Error()) {
		t.Fatalf("%T %q: decodeTelemetry said %v, decodeStrict %v", both, payload, err, strictErr)
	}
	if err == nil && !reflect.DeepEqual(both, strict) {
		t.Fatalf("%T %q: decodeTelemetry gave %+v, decodeStrict %+v", both, payload, both, strict)
	}
}

func checkAllWires(t *testing.T, payload []byte) {
	flatMatchesStrict[stepsWire](t, payload)
	flatMatchesStrict[heartRateWire](t, payload)
	flatMatchesStrict[sleepWire](t, payload)
	flatMatchesStrict[batteryWire](t, payload)
	flatMatchesStrict[weightWire](t, payload)
	flatMatchesStrict[locationWire](t, payload)
	flatMatchesStrict[statusWire](t, payload)
}

var flatCases = []string{
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":12}`,
	`{"seq":2,"ts":"2026-03-01T11:00:00.123456789+02:00","bpm":60}`,
	`{"seq":3,"ts":"2026-03-01T11:00:00Z","minutes":60,"stage":"deep"}`,
	`{"seq":4,"ts":"2026-03-01T11:00:00Z","kg":70,"body_fat_pct":18.5,"impedance_ohm":4.8e2,"person":"Zoë"}`,
	`{"seq":5,"ts":"2026-03-01T11:00:00Z","lat":-1.25,"lon":2E-3,"accuracy_m":0}`,
	`{"seq":6,"ts":"2026-03-01T11:00:00Z","clients":-0}`,
	`{"seq":18446744073709551615,"ts":"2026-03-01T11:00:00Z","percent":1e2}`,
	`{}`,
	// Each of these is left to decodeStrict, which refuses or reads it its own way.
	`{"seq":18446744073709551616,"ts":"2026-03-01T11:00:00Z","count":1}`,
	`{"seq":1,"seq":2,"ts":"2026-03-01T11:00:00Z","count":1}`,
	`{"SEQ":1,"ts":"2026-03-01T11:00:00Z","count":1}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":1.0}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":null}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":012}`,
	`{"seq":-1,"ts":"2026-03-01T11:00:00Z","count":1}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","percent":1e400}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","stage":"de\u0065p"}`,
	`{"seq":1,"ts":"2026-03-01 11:00:00Z","count":1}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":1} `,
	` {"seq":1,"ts":"2026-03-01T11:00:00Z","count":1}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":1}{}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":1,}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":"1"}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","person":"\xff"}`,
	`{"seq":1,"ts":"2026-03-01T11:00:00Z","count":1,"extra":2}`,
	`{"seq":1 ,"ts":"2026-03-01T11:00:00Z"}`,
	`{"seq":1e0,"ts":"2026-03-01T11:00:00Z"}`,
	"{\"seq\":1,\"ts\":\"2026-03-01T11:00:00Z\",\"person\":\"\xff\"}",
	"{\"seq\":1,\"stage\":\"de\xc3\"}",
	`{"seq"`, `{"seq":`, `{"seq":1`, `{"`, `{`, `}`, ``,
}

func TestDecodeFlatMatchesStrict(t *testing.T) {
	for _, c := range flatCases {
		checkAllWires(t, []byte(c))
	}
	// The fast path is the one taken for what devices send.
	var w stepsWire
	if !decodeFlat([]byte(flatCases[0]), MaxTelemetrySize, &w) || *w.Count != 12 || *w.Seq != 1 {
		t.Fatalf("a plain steps sample was not read by decodeFlat: %+v", w)
	}
}

// FuzzDecodeFlatMatchesStrict: decodeFlat, the fast path of every telemetry publish, never
// accepts what encoding/json's strict decoder would refuse or read differently.
func FuzzDecodeFlatMatchesStrict(f *testing.F) {
	for _, c := range flatCases {
		f.Add([]byte(c))
	}
	f.Fuzz(checkAllWires)
}
