package devices

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestSyncEntryMarshalMatchesEncodingJSON: the hand-written encoder, called directly as the
// relay does, gives what encoding/json gives for the same fields, byte for byte once the
// HTML-safe escapes encoding/json adds are applied to it too, so controllers see the same JSON.
func TestSyncEntryMarshalMatchesEncodingJSON(t *testing.T) {
	// plain has SyncEntry's fields and tags but not its MarshalJSON method.
	type plain SyncEntry
	ts := time.Date(2026, 12, 1, 23, 4, 5, 123456789, time.UTC)
	for _, e := range []SyncEntry{
		{Cursor: 1, Device: "dev_abc", Stream: "steps", Seq: 7, TS: ts, Data: json.RawMessage(`{"count":12}`)},
		{Cursor: 1 << 40, Device: "dev_x", Stream: "weight", Seq: 1<<64 - 1, TS: ts.In(time.FixedZone("x", 3600)), Data: json.RawMessage("{ \"kg\" : 70.5,\n \"person\": \"<a&b>\" }")},
		{Cursor: 9, TS: time.Time{}, Gap: &Gap{From: 3, To: 8}},
		{Cursor: 2, Device: "dév\"<>&\\\u2028", Stream: "a\tb", TS: ts.Truncate(time.Second), Data: json.RawMessage(`null`)},
	} {
		want, err := json.Marshal(plain(e))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		json.HTMLEscape(&got, raw)
		if got.String() != string(want) {
			t.Errorf("got  %s\nwant %s", got.String(), want)
		}
	}
	if _, err := (SyncEntry{Data: json.RawMessage(`{"count":`)}).MarshalJSON(); err == nil {
		t.Error("invalid data encoded")
	}
}
