package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/devicehub/devicehub/simulator"
)

// implementedSteps are the scenario steps whose hub features have landed: each must pass.
// Extend it as features land (pairing and relay: issue 8; lost mode: issue 9). A step not
// listed here must still be reported, passing or "not implemented", never left out.
func implementedSteps() map[string]bool {
	return map[string]bool{
		simulator.StepRegisterEmail:               true,
		simulator.StepRegisterPhone:               true,
		simulator.StepLogin:                       true,
		simulator.StepPasswordReset:               true,
		simulator.StepBindPhone:                   true,
		simulator.StepBindBand:                    true,
		simulator.StepBindScale:                   true,
		simulator.StepActivationLock:              true,
		simulator.StepCrossAccountSubscribeDenied: true,
		simulator.StepUnbindRequiresPassword:      true,
		// Pairing, relay and settings (issue 8).
		simulator.StepPairBandPhone:          true,
		simulator.StepCrossAccountPairDenied: true,
		simulator.StepTelemetryRelay:         true,
		simulator.StepOfflineCatchup:         true,
		simulator.StepSettingsSync:           true,
		simulator.StepUnbindAndNewOwner:      true,
		// Commands and lost mode (issue 9).
		simulator.StepLostModeLock:            true,
		simulator.StepLostModeCallRestriction: true,
		simulator.StepUnlockByOwner:           true,
	}
}

// TestSimScenarioEmbedded runs `devicehub sim scenario --embedded --json` and requires every
// step to be reported, in order, and every implemented step to pass.
func TestSimScenarioEmbedded(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"sim", "scenario", "--embedded", "--json"}, nil, &stdout, &stderr)
	t.Logf("progress:\n%s", stderr.String())
	var rep simulator.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, stdout.String())
	}
	names := simulator.StepNames()
	if len(rep.Steps) != len(names) {
		t.Fatalf("%d steps reported, want %d", len(rep.Steps), len(names))
	}
	required := implementedSteps()
	allOK := true
	for i, s := range rep.Steps {
		if s.Name != names[i] {
			t.Errorf("step %d is %q, want %q", i+1, s.Name, names[i])
		}
		allOK = allOK && s.OK
		switch {
		case required[s.Name] && !s.OK:
			t.Errorf("step %s must pass: %s", s.Name, s.Detail)
		case !s.OK:
			// Its feature is still being built: reported, not required yet.
			t.Logf("step %s (not required yet): %s", s.Name, s.Detail)
		}
	}
	if rep.OK != allOK {
		t.Errorf("report ok=%v, but its steps say %v", rep.OK, allOK)
	}
	if wantCode := map[bool]int{true: 0, false: 1}[allOK]; code != wantCode {
		t.Errorf("exit code %d, want %d", code, wantCode)
	}
}

// TestSimLoadEmbedded runs a short `devicehub sim load --embedded` with a few dozen devices
// and requires every acknowledged sample to reach its phone, once.
func TestSimLoadEmbedded(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"sim", "load", "--embedded", "--json", "--accounts", "8", "--bands-per-account", "2",
		"--scales-per-account", "1", "--phones-per-account", "1", "--rate", "5", "--duration", "2s", "--qos", "1"}
	code := run(context.Background(), args, nil, &stdout, &stderr)
	t.Logf("progress:\n%s", stderr.String())
	if code != 0 && strings.Contains(stderr.String(), simulator.ErrNotImplemented.Error()) {
		// Said out loud in the test output: the hub has no pairing yet (issue 8), so nothing
		// can be relayed to phones.
		t.Skipf("the hub does not implement what load needs yet: %s", stderr.String())
	}
	var res simulator.LoadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("exit %d; stdout is not one JSON summary: %v\n%s", code, err, stdout.String())
	}
	t.Logf("%+v", res)
	if res.Devices != 32 {
		t.Errorf("%d devices, want 32", res.Devices)
	}
	if want := int64(24 * 10); res.Sent != want || res.Acked != want || res.PublishErrors != 0 {
		t.Errorf("sent %d acked %d errors %d, want %d sent and acked", res.Sent, res.Acked, res.PublishErrors, want)
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
