package hub_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/devicehub/devicehub/devices"
)

// roundTrip checks one argument decoder on a decoded request: it never panics, refuses with
// a *devices.DecodeError only, and what it accepts survives re-encoding: the same value
// decodes (and validates) again, so nothing HandleRequest acts on depends on how the device
// spelled it.
func roundTrip[T any](t *testing.T, r devices.Request) {
	t.Helper()
	a, err := devices.DecodeArgs[T](r)
	if err != nil {
		var de *devices.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("%T: error is not a *DecodeError: %v", a, err)
		}
		return
	}
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatalf("%T: accepted args do not encode: %v", a, err)
	}
	again, err := devices.DecodeArgs[T](devices.Request{ID: r.ID, Op: r.Op, Args: raw})
	if err != nil {
		t.Fatalf("%T %s: re-encoded args refused: %v", a, raw, err)
	}
	if !reflect.DeepEqual(normalize(t, a), normalize(t, again)) {
		t.Fatalf("%T: %+v became %+v after a round trip", a, a, again)
	}
}

// normalize compares values by their JSON form (json.RawMessage fields keep their spelling).
func normalize(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzDecodeRequestArgs: every request the device decoder accepts goes through every argument
// decoder HandleRequest uses (hub/requests.go), the pairing, settings, unlock and command ones
// included, which FuzzDecodeRequest in package devices leaves out.
func FuzzDecodeRequestArgs(f *testing.F) {
	for _, s := range []string{
		`{"id":"r1","op":"pair","args":{"device_id":"dev_a"}}`,
		`{"id":"r1","op":"unpair","args":{"device_id":"dev_a/#"}}`,
		`{"id":"r1","op":"settings_get","args":{"device_id":"profile"}}`,
		`{"id":"r1","op":"settings_get"}`,
		`{"id":"r1","op":"settings_report","args":{"reported":{"alarm":"07:00"},"version":3}}`,
		`{"id":"r1","op":"settings_report","args":{"doc":"profile","version":2}}`,
		`{"id":"r1","op":"settings_report","args":{"doc":"profile","reported":{},"version":-1}}`,
		`{"id":"r1","op":"settings_set","args":{"device_id":"dev_a","desired":{"a":{"b":null}},"base_version":0}}`,
		`{"id":"r1","op":"unlock","args":{"password":"correct horse"}}`,
		`{"id":"r1","op":"unlock","args":{"password":""}}`,
		`{"id":"r1","op":"command","args":{"device_id":"dev_a","type":"lock","message":"Lost","contact_number":"+15551234567"}}`,
		`{"id":"r1","op":"command","args":{"device_id":"dev_a","type":"wipe"}}`,
		`{"id":"r1","op":"command","args":{"device_id":"dev_a","type":"lock","message":"\u0000"}}`,
		`{"id":"r1","op":"command_ack","args":{"command_id":"cmd_1","status":"acknowledged"}}`,
		`{"id":"r1","op":"unbind","args":{"password":"pw"}}`,
		`{"id":"r1","op":"bind","args":{"device_id":"dev_a","code":"012345"}}`,
		`{"id":"r1","op":"sync_ack","args":{"cursor":9007199254740993}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := devices.DecodeRequest(b)
		if err != nil {
			return // FuzzDecodeRequest covers the request decoder's refusals
		}
		roundTrip[devices.BindArgs](t, r)
		roundTrip[devices.UnbindArgs](t, r)
		roundTrip[devices.PairArgs](t, r)
		roundTrip[devices.SyncAckArgs](t, r)
		roundTrip[devices.SettingsGetArgs](t, r)
		roundTrip[devices.SettingsSetArgs](t, r)
		roundTrip[devices.SettingsReportArgs](t, r)
		roundTrip[devices.CommandAckArgs](t, r)
		roundTrip[devices.UnlockArgs](t, r)
		roundTrip[devices.CommandArgs](t, r)
	})
}
