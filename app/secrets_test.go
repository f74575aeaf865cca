package app_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/internal/mqttwire"
)

// TestNoSecretsInBrokerState: the broker's in-flight messages to a device are not written to
// SQLite, so the bind code (in a bind_code response) and the binding secret (in the "bound"
// command) never sit in plain text in the database, even for a persistent session that
// leaves them unacknowledged. (mochi's storage hook wrote every in-flight QoS 1 message
// with its payload.) Both files are searched, the database and its write-ahead log, while
// the hub runs and after it stopped.
func TestNoSecretsInBrokerState(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	band := w.provision(t, "band")
	c := rawDevice(t, w.h.MQTTAddr(), 4, band.DeviceID, band.Secret, false) // persistent session
	if code := c.subscribe(t, devices.DeviceFilter(band.DeviceID)); code != 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	c.publish(t, 0x30, devices.RequestTopic(band.DeviceID), nil, []byte(`{"id":"c1","op":"bind_code"}`))
	// Neither message is acknowledged: each stays in flight in the session.
	var resp struct {
		Result devices.BindCodeResult `json:"result"`
	}
	respPayload := unackedPublish(t, c, devices.ResponseTopic(band.DeviceID))
	_ = json.Unmarshal(respPayload, &resp)
	if len(resp.Result.Code) != 6 {
		t.Fatalf("bind code %q", resp.Result.Code)
	}
	if err := w.anna.Bind(ctx, band.DeviceID, resp.Result.Code); err != nil {
		t.Fatal(err)
	}
	var cmd devices.Command
	var bound devices.BoundArgs
	cmdPayload := unackedPublish(t, c, devices.CommandTopic(band.DeviceID))
	if err := json.Unmarshal(cmdPayload, &cmd); err != nil || cmd.Type != devices.CmdBound {
		t.Fatalf("bound command %+v: %v", cmd, err)
	}
	if err := json.Unmarshal(cmd.Args, &bound); err != nil || bound.Secret == "" {
		t.Fatalf("bound args %s: %v", cmd.Args, err)
	}
	secrets := map[string][]byte{
		"bind code response": []byte(`"code":"` + resp.Result.Code + `"`),
		"binding secret":     []byte(bound.Secret),
		// mochi's stored messages are JSON, with the payload in base64.
		"bind code response (base64)": []byte(base64.StdEncoding.EncodeToString(respPayload)),
		"bound command (base64)":      []byte(base64.StdEncoding.EncodeToString(cmdPayload)),
	}
	searchDB := func(when string) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(w.h.Dir, "devicehub.db*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for name, s := range secrets {
				if bytes.Contains(b, s) {
					t.Errorf("%s: the %s is in %s", when, name, filepath.Base(f))
				}
			}
		}
	}
	searchDB("while running")
	c.c.Close()
	w.h.Stop(t)
	searchDB("after stopping")
}

// unackedPublish reads until a PUBLISH on topic and returns its payload without acknowledging
// it (3.1.1, QoS 1).
func unackedPublish(t *testing.T, c *rawClient, topic string) []byte {
	t.Helper()
	for {
		hdr, body, err := mqttwire.ReadPacket(c.c)
		if err != nil {
			t.Fatalf("waiting for a publish on %s: %v", topic, err)
		}
		if hdr>>4 != 3 {
			continue
		}
		n := 2 + (int(body[0])<<8 | int(body[1]))
		if string(body[2:n]) != topic {
			continue
		}
		if (hdr>>1)&3 > 0 {
			n += 2
		}
		return body[n:]
	}
}
