package devices

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestValidateTelemetry(t *testing.T) {
	const ts = `"seq":1,"ts":"2026-03-01T11:59:00+01:00"`
	tests := []struct {
		name   string
		t      Type
		stream string
		in     string
		body   string // canonical body when ok
		field  string // failing field otherwise
		fails  bool
	}{
		{"steps", Band, "steps", `{` + ts + `,"count":120}`, `{"count":120}`, "", false},
		{"steps zero", Band, "steps", `{` + ts + `,"count":0}`, `{"count":0}`, "", false},
		{"steps max", Band, "steps", `{` + ts + `,"count":100001}`, "", "count", true},
		{"steps fraction", Band, "steps", `{` + ts + `,"count":1.5}`, "", "count", true},
		{"steps missing", Band, "steps", `{` + ts + `}`, "", "count", true},
		{"heart rate", Band, "heart_rate", `{` + ts + `,"bpm":72}`, `{"bpm":72}`, "", false},
		{"heart rate low", Band, "heart_rate", `{` + ts + `,"bpm":19}`, "", "bpm", true},
		{"sleep", Band, "sleep", `{` + ts + `,"minutes":30,"stage":"rem"}`, `{"minutes":30,"stage":"rem"}`, "", false},
		{"sleep stage", Band, "sleep", `{` + ts + `,"minutes":30,"stage":"dreaming"}`, "", "stage", true},
		{"sleep too long", Band, "sleep", `{` + ts + `,"minutes":1441,"stage":"deep"}`, "", "minutes", true},
		{"battery", Scale, "battery", `{` + ts + `,"percent":55.5}`, `{"percent":55.5}`, "", false},
		{"battery over", Phone, "battery", `{` + ts + `,"percent":101}`, "", "percent", true},
		{"weight", Scale, "weight", `{` + ts + `,"kg":72.4,"person":"alice"}`, `{"kg":72.4,"person":"alice"}`, "", false},
		{"weight full", Scale, "weight", `{` + ts + `,"kg":72.4,"body_fat_pct":20,"impedance_ohm":500,"person":"alice"}`,
			`{"kg":72.4,"body_fat_pct":20,"impedance_ohm":500,"person":"alice"}`, "", false},
		{"weight light", Scale, "weight", `{` + ts + `,"kg":1.9,"person":"a"}`, "", "kg", true},
		{"weight fat", Scale, "weight", `{` + ts + `,"kg":70,"body_fat_pct":80,"person":"a"}`, "", "body_fat_pct", true},
		{"weight impedance", Scale, "weight", `{` + ts + `,"kg":70,"impedance_ohm":50,"person":"a"}`, "", "impedance_ohm", true},
		{"weight no person", Scale, "weight", `{` + ts + `,"kg":70}`, "", "person", true},
		{"location", Phone, "location", `{` + ts + `,"lat":-33.9,"lon":151.2,"accuracy_m":12}`, `{"lat":-33.9,"lon":151.2,"accuracy_m":12}`, "", false},
		{"location lat", Tablet, "location", `{` + ts + `,"lat":91,"lon":0,"accuracy_m":1}`, "", "lat", true},
		{"location lon", Phone, "location", `{` + ts + `,"lat":0,"lon":-181,"accuracy_m":1}`, "", "lon", true},
		{"location missing accuracy", Phone, "location", `{` + ts + `,"lat":0,"lon":0}`, "", "accuracy_m", true},
		{"status", Router, "status", `{` + ts + `,"clients":3}`, `{"clients":3}`, "", false},
		{"status many", Router, "status", `{` + ts + `,"clients":1001}`, "", "clients", true},
		{"seq zero", Band, "steps", `{"seq":0,"ts":"2026-03-01T11:00:00Z","count":1}`, "", "seq", true},
		{"seq negative", Band, "steps", `{"seq":-1,"ts":"2026-03-01T11:00:00Z","count":1}`, "", "seq", true},
		{"seq missing", Band, "steps", `{"ts":"2026-03-01T11:00:00Z","count":1}`, "", "seq", true},
		{"ts missing", Band, "steps", `{"seq":1,"count":1}`, "", "ts", true},
		{"ts not rfc3339", Band, "steps", `{"seq":1,"ts":"yesterday","count":1}`, "", "ts", true},
		{"ts far future", Band, "steps", `{"seq":1,"ts":"2026-03-02T12:00:01Z","count":1}`, "", "ts", true},
		{"ts a day ahead is fine", Band, "steps", `{"seq":1,"ts":"2026-03-02T12:00:00Z","count":1}`, `{"count":1}`, "", false},
		{"unknown field", Band, "steps", `{` + ts + `,"count":1,"extra":true}`, "", "", true},
		{"wrong stream for type", Phone, "steps", `{` + ts + `,"count":1}`, "", "", true},
		{"not json", Band, "steps", `nope`, "", "", true},
		{"array", Band, "steps", `[]`, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ValidateTelemetry(tt.t, tt.stream, []byte(tt.in), now)
			if tt.fails {
				var de *DecodeError
				if !errors.As(err, &de) || de.Field != tt.field {
					t.Fatalf("got %v, want a DecodeError on field %q", err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatalf("ValidateTelemetry: %v", err)
			}
			if string(got.Body) != tt.body || got.Stream != tt.stream || got.Seq < 1 || got.TS.Location() != time.UTC {
				t.Fatalf("got %+v body %s, want body %s", got, got.Body, tt.body)
			}
		})
	}
}

func FuzzValidateTelemetry(f *testing.F) {
	seeds := []struct{ stream, in string }{
		{"steps", `{"seq":1,"ts":"2026-03-01T11:00:00Z","count":12}`},
		{"heart_rate", `{"seq":2,"ts":"2026-03-01T11:00:00Z","bpm":60}`},
		{"sleep", `{"seq":3,"ts":"2026-03-01T11:00:00Z","minutes":60,"stage":"deep"}`},
		{"weight", `{"seq":4,"ts":"2026-03-01T11:00:00Z","kg":70,"body_fat_pct":18.5,"impedance_ohm":480,"person":"bob"}`},
		{"location", `{"seq":5,"ts":"2026-03-01T11:00:00Z","lat":1,"lon":2,"accuracy_m":3}`},
		{"status", `{"seq":6,"ts":"2026-03-01T11:00:00Z","clients":4}`},
		{"battery", `{"seq":18446744073709551615,"ts":"2026-03-01T11:00:00Z","percent":1e2}`},
	}
	for _, s := range seeds {
		f.Add(s.stream, []byte(s.in))
	}
	types := Types()
	f.Fuzz(func(t *testing.T, stream string, payload []byte) {
		for _, ty := range types {
			tel, err := ValidateTelemetry(ty, stream, payload, now)
			if err != nil {
				continue
			}
			if !StreamAllowed(ty, stream) || tel.Seq < 1 || tel.TS.After(now.Add(MaxClockSkew)) {
				t.Fatalf("accepted %s/%s: %+v", ty, stream, tel)
			}
			// The canonical body must itself validate again once seq and ts are put back.
			again := append([]byte(`{"seq":1,"ts":"2026-01-01T00:00:00Z",`), tel.Body[1:]...)
			if _, err := ValidateTelemetry(ty, stream, again, now); err != nil {
				t.Fatalf("canonical body %s does not validate: %v", tel.Body, err)
			}
		}
	})
}

// BenchmarkValidateTelemetry is the schema check every telemetry publish takes on the
// broker's read goroutine, with the payload the relay benchmark's bands send.
func BenchmarkValidateTelemetry(b *testing.B) {
	now := time.Now()
	payload := []byte(fmt.Sprintf(`{"seq":%d,"ts":%q,"count":%d}`, 12345, now.UTC().Format(time.RFC3339Nano), 120))
	b.ReportAllocs()
	for range b.N {
		if _, err := ValidateTelemetry(Band, StreamSteps, payload, now); err != nil {
			b.Fatal(err)
		}
	}
}
