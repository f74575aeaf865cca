package devices

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		field string // "" with ok
		ok    bool
	}{
		{"bind_code", `{"id":"r1","op":"bind_code"}`, "", true},
		{"with args", `{"id":"r-2","op":"bind","args":{"device_id":"d2","code":"123456"}}`, "", true},
		{"null args", `{"id":"r1","op":"bind_code","args":null}`, "", true},
		{"unknown op", `{"id":"r1","op":"call"}`, "op", false},
		{"missing op", `{"id":"r1"}`, "op", false},
		{"missing id", `{"op":"bind_code"}`, "id", false},
		{"id too long", `{"id":"` + strings.Repeat("x", 65) + `","op":"bind_code"}`, "id", false},
		{"id with space", `{"id":"a b","op":"bind_code"}`, "id", false},
		{"id with control", `{"id":"a\u0001","op":"bind_code"}`, "id", false},
		{"unknown field", `{"id":"r1","op":"bind_code","extra":1}`, "", false},
		{"args not object", `{"id":"r1","op":"bind","args":[1]}`, "args", false},
		{"id wrong type", `{"id":1,"op":"bind_code"}`, "id", false},
		{"trailing", `{"id":"r1","op":"bind_code"} {}`, "", false},
		{"not json", `hello`, "", false},
		{"empty", ``, "", false},
		{"too big", `{"id":"r1","op":"bind_code","args":{"x":"` + strings.Repeat("a", MaxRequestSize) + `"}}`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(tt.in))
			if tt.ok {
				if err != nil {
					t.Fatalf("DecodeRequest: %v", err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("want *DecodeError, got %v", err)
			}
			if de.Field != tt.field {
				t.Fatalf("field = %q, want %q (%v)", de.Field, tt.field, err)
			}
		})
	}
}

func TestDecodeArgs(t *testing.T) {
	req := func(op, args string) Request { return Request{ID: "r", Op: op, Args: json.RawMessage(args)} }
	t.Run("bind ok", func(t *testing.T) {
		a, err := DecodeArgs[BindArgs](req(OpBind, `{"device_id":"d2","code":"012345"}`))
		if err != nil || a.DeviceID != "d2" || a.Code != "012345" {
			t.Fatalf("got %+v, %v", a, err)
		}
	})
	t.Run("unbind default self", func(t *testing.T) {
		a, err := DecodeArgs[UnbindArgs](req(OpUnbind, `{"password":"pw"}`))
		if err != nil || a.DeviceID != "" {
			t.Fatalf("got %+v, %v", a, err)
		}
	})
	fails := []struct {
		name, field string
		decode      func() error
	}{
		{"bind short code", "args.code", func() error {
			_, err := DecodeArgs[BindArgs](req(OpBind, `{"device_id":"d2","code":"12345"}`))
			return err
		}},
		{"bind letters", "args.code", func() error {
			_, err := DecodeArgs[BindArgs](req(OpBind, `{"device_id":"d2","code":"12345a"}`))
			return err
		}},
		{"bind bad id", "args.device_id", func() error {
			_, err := DecodeArgs[BindArgs](req(OpBind, `{"device_id":"d/#","code":"123456"}`))
			return err
		}},
		{"bind missing args", "args.device_id", func() error { _, err := DecodeArgs[BindArgs](req(OpBind, ``)); return err }},
		{"bind unknown arg", "args", func() error {
			_, err := DecodeArgs[BindArgs](req(OpBind, `{"device_id":"d2","code":"123456","x":1}`))
			return err
		}},
		{"unbind no password", "args.password", func() error { _, err := DecodeArgs[UnbindArgs](req(OpUnbind, `{}`)); return err }},
		{"ack bad status", "args.status", func() error {
			_, err := DecodeArgs[CommandAckArgs](req(OpCommandAck, `{"command_id":"c1","status":"done"}`))
			return err
		}},
		{"ack control in detail", "args.detail", func() error {
			_, err := DecodeArgs[CommandAckArgs](req(OpCommandAck, `{"command_id":"c1","status":"failed","detail":"\u001b[2J"}`))
			return err
		}},
		{"sync ack zero", "args.cursor", func() error { _, err := DecodeArgs[SyncAckArgs](req(OpSyncAck, `{"cursor":0}`)); return err }},
		{"sync ack string", "args.cursor", func() error { _, err := DecodeArgs[SyncAckArgs](req(OpSyncAck, `{"cursor":"5"}`)); return err }},
		{"settings not object", "args.desired", func() error {
			_, err := DecodeArgs[SettingsSetArgs](req(OpSettingsSet, `{"device_id":"d2","desired":[1],"base_version":1}`))
			return err
		}},
		{"settings number out of range", "args.desired", func() error {
			_, err := DecodeArgs[SettingsSetArgs](req(OpSettingsSet, `{"device_id":"d2","desired":{"a":1e700},"base_version":1}`))
			return err
		}},
		{"report number out of range", "args.reported", func() error {
			_, err := DecodeArgs[SettingsReportArgs](req(OpSettingsReport, `{"reported":{"a":{"b":[-1e309]}},"version":1}`))
			return err
		}},
		{"settings command number out of range", "args.desired", func() error {
			_, err := DecodeArgs[SettingsArgs](Request{ID: "r", Op: "settings", Args: json.RawMessage(`{"desired":{"a":1e700},"version":1}`)})
			return err
		}},
		{"report negative", "args.version", func() error {
			_, err := DecodeArgs[SettingsReportArgs](req(OpSettingsReport, `{"reported":{},"version":-1}`))
			return err
		}},
		{"unlock empty", "args.password", func() error { _, err := DecodeArgs[UnlockArgs](req(OpUnlock, `{"password":""}`)); return err }},
		{"pair missing", "args.device_id", func() error { _, err := DecodeArgs[PairArgs](req(OpPair, `{}`)); return err }},
	}
	t.Run("out of range number named", func(t *testing.T) {
		_, err := DecodeArgs[SettingsSetArgs](req(OpSettingsSet, `{"device_id":"d2","desired":{"a":1e700},"base_version":1}`))
		if err == nil || !strings.Contains(err.Error(), "1e700") || !strings.Contains(err.Error(), "out of range") {
			t.Fatalf("got %v, want an error naming the number 1e700 as out of range", err)
		}
	})
	for _, tt := range fails {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode()
			var de *DecodeError
			if !errors.As(err, &de) || de.Field != tt.field {
				t.Fatalf("got %v, want a DecodeError on %q", err, tt.field)
			}
		})
	}
}

func TestCommandRoundTrip(t *testing.T) {
	key := make([]byte, LinkKeySize)
	args, _ := json.Marshal(PairedArgs{PeerID: "d2", LinkKey: key})
	c := Command{ID: "c1", Type: CmdPaired, Args: args, IssuedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"c1","type":"paired","args":{"peer_id":"d2","link_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"issued_at":"2026-01-02T03:04:05Z"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back Command
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var pa PairedArgs
	if err := json.Unmarshal(back.Args, &pa); err != nil || pa.Validate() != nil {
		t.Fatalf("paired args: %+v %v", pa, err)
	}
}

func TestResponseEncoding(t *testing.T) {
	b, _ := json.Marshal(Response{ID: "r1", OK: false, Error: &ErrorBody{Code: "invalid", Message: "bad", Field: "args.code"}})
	want := `{"id":"r1","ok":false,"error":{"code":"invalid","message":"bad","field":"args.code"}}`
	if string(b) != want {
		t.Fatalf("got %s", b)
	}
	b, _ = json.Marshal(SyncEntry{Cursor: 7, Device: "d1", Stream: "steps", Seq: 3, TS: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Data: json.RawMessage(`{"count":5}`), Gap: &Gap{From: 2, To: 6}})
	want = `{"cursor":7,"device":"d1","stream":"steps","seq":3,"ts":"2026-01-01T00:00:00Z","data":{"count":5},"gap":{"from":2,"to":6}}`
	if string(b) != want {
		t.Fatalf("got %s", b)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"id":"r1","op":"bind_code"}`, `{"id":"r1","op":"bind","args":{"device_id":"d","code":"123456"}}`,
		`{"id":"","op":"x"}`, `{"id":"r","op":"bind","args":null}`, `{"id":"r","op":"bind"} x`, `[`, ``, `{"ID":"r","OP":"bind_code"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a *DecodeError: %v", err)
			}
			return
		}
		if validRequestID(r.ID) != nil || !KnownOp(r.Op) {
			t.Fatalf("accepted %+v", r)
		}
		// Every typed decoder must cope with whatever args got through, without panicking.
		_, _ = DecodeArgs[BindArgs](r)
		_, _ = DecodeArgs[UnbindArgs](r)
		_, _ = DecodeArgs[CommandAckArgs](r)
		_, _ = DecodeArgs[SettingsSetArgs](r)
		_, _ = DecodeArgs[SyncAckArgs](r)
	})
}
