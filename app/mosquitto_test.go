package app_test

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
)

// mosquittoTool finds a mosquitto-clients program or skips the test saying what it needs.
func mosquittoTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s from Debian's mosquitto-clients package (apt-get install mosquitto-clients); .ci/run installs it", name)
	}
	return p
}

// TestMosquittoClientsActAsDevice: with nothing but mosquitto-clients and docs/protocol.md, a
// gadget asks for its bind code, and a refused subscription is reported to it.
func TestMosquittoClientsActAsDevice(t *testing.T) {
	rr := mosquittoTool(t, "mosquitto_rr")
	sub := mosquittoTool(t, "mosquitto_sub")
	h := apptest.Start(t, nil)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	creds, err := api.Provision(ctx, "band", 1)
	if err != nil {
		t.Fatal(err)
	}
	id, secret := creds[0].DeviceID, creds[0].Secret
	host, port, _ := net.SplitHostPort(h.MQTTAddr())

	out, err := exec.CommandContext(ctx, rr, "-V", "mqttv5", "-h", host, "-p", port, "-i", id, "-u", id, "-P", secret,
		"-W", "10", "-t", "devices/"+id+"/req", "-e", "devices/"+id+"/res", "-m", `{"id":"r1","op":"bind_code"}`).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_rr: %v\n%s", err, out)
	}
	var resp struct {
		ID     string `json:"id"`
		OK     bool   `json:"ok"`
		Result struct {
			Code string `json:"code"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || !resp.OK || resp.ID != "r1" || len(resp.Result.Code) != 6 {
		t.Fatalf("bind_code response %q: %v", out, err)
	}

	out, err = exec.CommandContext(ctx, sub, "-V", "mqttv311", "-h", host, "-p", port, "-i", id, "-u", id, "-P", secret,
		"-W", "5", "-t", "#").CombinedOutput()
	// mosquitto_sub reports the SUBACK refusal and exits (with status 0).
	if !strings.Contains(string(out), "All subscription requests were denied") {
		t.Fatalf("subscribing to # should be denied: %v\n%s", err, out)
	}

	out, err = exec.CommandContext(ctx, sub, "-V", "mqttv311", "-h", host, "-p", port, "-i", id, "-u", id, "-P", "wrong",
		"-W", "5", "-t", "devices/"+id+"/res").CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "not authori") {
		t.Fatalf("a wrong secret should be refused: %v\n%s", err, out)
	}
}
