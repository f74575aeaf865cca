package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/devicehub/devicehub/hub"
)

// maxBodyBytes bounds every JSON request body; the API's bodies are a few hundred bytes.
const maxBodyBytes = 64 << 10

// decodeJSON reads one JSON object from the body into v: at most maxBodyBytes, no unknown
// fields, nothing after it. Failures come back as a *hub.Error (invalid, or too_large) that
// names the field when there is one.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			// Strict on purpose: a cross-site HTML form can post only form or text types.
			return hub.Errorf(hub.EInvalid, "Content-Type must be application/json: send the JSON body with the header "+
				"Content-Type: application/json (curl: --json '{...}', or -H 'Content-Type: application/json' -d '{...}')")
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil && isTooLarge(err) {
			return jsonError(err)
		}
		return hub.Errorf(hub.EInvalid, "request body must hold one JSON object and nothing after it")
	}
	return nil
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case isTooLarge(err):
		return &hub.Error{Code: hub.ETooLarge, Message: fmt.Sprintf("request body is larger than %d bytes", maxBodyBytes), Err: err}
	case errors.Is(err, io.EOF):
		return hub.Errorf(hub.EInvalid, "request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return hub.Errorf(hub.EInvalid, "malformed JSON: the body ends too early")
	case errors.As(err, &syn):
		return hub.Errorf(hub.EInvalid, "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		return hub.FieldError(hub.EInvalid, field, "%s must be a JSON %s, not %s", fieldName(field), typ.Type.Kind(), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return hub.FieldError(hub.EInvalid, field, "unknown field %q", field)
	default:
		return &hub.Error{Code: hub.EInvalid, Message: "malformed JSON request body", Err: err}
	}
}

func fieldName(f string) string {
	if f == "" {
		return "the body"
	}
	return f
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
