package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/simulator"
)

// issueSteps are the scenario's steps as issue 7 names them, in its order. Written out here,
// not taken from the simulator, so a renamed, dropped or reordered step fails the test.
var issueSteps = []string{
	"register_email",
	"register_phone",
	"login",
	"password_reset",
	"bind_phone",
	"bind_band",
	"bind_scale",
	"activation_lock",
	"pair_band_phone",
	"cross_account_pair_denied",
	"cross_account_subscribe_denied",
	"telemetry_relay",
	"offline_catchup",
	"settings_sync",
	"lost_mode_lock",
	"lost_mode_call_restriction",
	"unbind_requires_password",
	"unlock_by_owner",
	"unbind_and_new_owner",
}

// TestSimScenarioEmbedded runs `devicehub sim scenario --embedded --json` and requires the
// issue's 19 steps to be reported, in order, and every one of them to pass: every feature
// they need has landed, so "not implemented" is a failure like any other.
func TestSimScenarioEmbedded(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"sim", "scenario", "--embedded", "--json"}, nil, &stdout, &stderr)
	t.Logf("progress:\n%s", stderr.String())
	var rep simulator.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, stdout.String())
	}
	if len(rep.Steps) != len(issueSteps) {
		t.Errorf("%d steps reported, want %d", len(rep.Steps), len(issueSteps))
	}
	for i, want := range issueSteps {
		if i >= len(rep.Steps) {
			t.Errorf("step %d %s not reported", i+1, want)
			continue
		}
		s := rep.Steps[i]
		if s.Name != want {
			t.Errorf("step %d is %q, want %q", i+1, s.Name, want)
		}
		if !s.OK {
			t.Errorf("step %d %s did not pass: %s", i+1, s.Name, s.Detail)
		}
	}
	if !rep.OK || code != 0 {
		t.Errorf("report ok=%v, exit code %d; want ok and 0", rep.OK, code)
	}
}

// TestSimLoadEmbedded runs a short `devicehub sim load --embedded` with a few dozen devices
// and requires every sample to be acknowledged and to reach its phone, once, and the summary
// to carry every field the issue names, connect_ms included.
func TestSimLoadEmbedded(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"sim", "load", "--embedded", "--json", "--accounts", "8", "--bands-per-account", "2",
		"--scales-per-account", "1", "--phones-per-account", "1", "--rate", "5", "--duration", "2s", "--qos", "1"}
	code := run(context.Background(), args, nil, &stdout, &stderr)
	t.Logf("progress:\n%s", stderr.String())
	var res simulator.LoadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("exit %d; stdout is not one JSON summary: %v\n%s", code, err, stdout.String())
	}
	t.Logf("%+v", res)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sent", "acked", "delivered", "lost", "duplicates", "throughput_per_s", "latency_ms", "connect_ms", "publish_errors", "unacked"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("summary lacks %q: %s", k, stdout.String())
		}
	}
	if res.ConnectMS < 0 {
		t.Errorf("connect_ms %d", res.ConnectMS)
	}
	if res.Devices != 32 {
		t.Errorf("%d devices, want 32", res.Devices)
	}
	if want := int64(24 * 10); res.Sent != want || res.Acked != want || res.PublishErrors != 0 || res.Unacked != 0 {
		t.Errorf("sent %d acked %d errors %d unacked %d, want %d sent and acked", res.Sent, res.Acked, res.PublishErrors, res.Unacked, want)
	}
	if res.Lost != 0 || res.Delivered != res.Acked || res.Misrouted != 0 {
		t.Errorf("lost %d, delivered %d of %d acked, misrouted %d", res.Lost, res.Delivered, res.Acked, res.Misrouted)
	}
	if res.LatencyMS.Max <= 0 || res.LatencyMS.P50 > res.LatencyMS.P99 || res.ThroughputPerS <= 0 {
		t.Errorf("implausible measurements: %+v", res)
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}

// hubFlag is the --hub value for a hub started by the test.
func hubFlag(h *apptest.Hub) string { return "mqtt=" + h.MQTTAddr() + ",http=" + h.HTTPAddr() }

// TestSimLoadAgainstHub runs `sim load --hub` against a hub the test started on its own
// (not --embedded), without --json and with stdout not a terminal: the progress comes as
// plain lines and the summary as text, on stdout. The admin token comes from the environment.
func TestSimLoadAgainstHub(t *testing.T) {
	h := apptest.Start(t, nil)
	var stdout, stderr bytes.Buffer
	args := []string{"sim", "load", "--hub", hubFlag(h), "--accounts", "4", "--bands-per-account", "1",
		"--scales-per-account", "1", "--phones-per-account", "1", "--rate", "4", "--duration", "1s"}
	code := run(context.Background(), args, []string{"DEVICEHUB_ADMIN_TOKEN=" + h.Config.Admin.Token}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, re := range []string{
		`(?m)^provision$`,
		`(?m)^provision: done, 12 in \d+\.\ds$`,
		`(?m)^connect: 12 to do$`,
		`(?m)^connect: 12/12 \(100%\) \d+\.\ds$`,
		`(?m)^subscribe: 4 to do$`,
		`(?m)^pair: 8/8 \(100%\) `,
		`(?m)^publish: 32 to do$`,
		`(?m)^publish: 32/32 \(100%\) `,
		`(?m)^publish: done, 32 in `,
		`(?m)^settle$`,
		`(?m)^devices 12 \(accounts 4\), connected in \d+ ms$`,
		`(?m)^sent 32, acked 32, delivered 32, lost 0, duplicates \d+, misrouted 0, publish errors 0, unacknowledged 0$`,
		`(?m)^throughput [0-9.]+/s, latency ms p50 [0-9.]+ p95 [0-9.]+ p99 [0-9.]+ max [0-9.]+$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("stdout lacks %s", re)
		}
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\x1b[") {
		t.Errorf("a progress bar was drawn on a non-terminal: %q", out)
	}
	// It was the test's hub that took the telemetry: its broker counted the 32 samples in
	// (and the requests: pairing, sync acks), none of which it had before the run.
	resp, err := apptest.Get(t, h.URL()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^devicehub_mqtt_messages_in_total (\d+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no devicehub_mqtt_messages_in_total in the hub's metrics")
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 32 {
		t.Errorf("the hub received %d publishes, want at least the 32 samples", n)
	}
}

// stopOnLine is a writer that runs fn once when a line starting with prefix is written.
type stopOnLine struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	prefix string
	fn     func()
	fired  bool
}

func (w *stopOnLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	fire := !w.fired && strings.Contains("\n"+w.buf.String(), "\n"+w.prefix)
	w.fired = w.fired || fire
	w.mu.Unlock()
	if fire {
		w.fn()
	}
	return len(p), nil
}

func (w *stopOnLine) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestSimLoadFailsOnPublishErrors stops the hub as publishing starts: the publishes that
// follow are never acknowledged. They are not "lost" (the hub never took them), but the run
// did not deliver what it was asked to, so it exits 1 and says so in the JSON and on stderr.
func TestSimLoadFailsOnPublishErrors(t *testing.T) {
	h := apptest.Start(t, nil)
	var stdout bytes.Buffer
	stderr := &stopOnLine{prefix: "publish: ", fn: func() { h.Stop(t) }}
	args := []string{"sim", "load", "--hub", hubFlag(h), "--admin-token", h.Config.Admin.Token, "--json",
		"--accounts", "2", "--bands-per-account", "1", "--scales-per-account", "0", "--phones-per-account", "1",
		"--rate", "2", "--duration", "2s", "--publish-timeout", "1s", "--settle", "1s"}
	code := run(context.Background(), args, nil, &stdout, stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	var res simulator.LoadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("exit %d; stdout is not one JSON summary: %v", code, err)
	}
	if res.Sent != 8 || res.PublishErrors == 0 || res.Unacked == 0 || res.Acked+res.Unacked != res.Sent {
		t.Errorf("sent %d acked %d publish errors %d unacked %d: want 8 sent, some not acknowledged", res.Sent, res.Acked, res.PublishErrors, res.Unacked)
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := fmt.Sprintf("%d publish errors, %d unacknowledged", res.PublishErrors, res.Unacked); !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr does not say %q", want)
	}
}
