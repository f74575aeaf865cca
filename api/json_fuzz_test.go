package api

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/devicehub/devicehub/hub"
)

// FuzzDecodeJSON: whatever a client sends, the request decoder answers with a hub error a
// client may see (never a panic, never an internal error), and what it accepts is one object
// of the expected shape.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"device_id":"dev_x","code":"123456"}`, `{}`, `{"code":1}`, `{"extra":true}`, `[]`, `null`,
		`{"device_id":"a"}{"code":"1"}`, `{"device_id":"\u0000"}`, "{\"code\":\"\xff\"}", `{"code":"1"`, ``,
		`{"device_id":{"nested":[[[[[[[[[[[]]]]]]]]]]]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/api/v1/devices/bind", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var v bindRequest
		err := decodeJSON(httptest.NewRecorder(), r, &v)
		if err == nil {
			return
		}
		e := hub.AsError(err)
		if e == nil || (e.Code != hub.EInvalid && e.Code != hub.ETooLarge) {
			t.Fatalf("decode %q: %v is not an invalid-input error", body, err)
		}
	})
}
