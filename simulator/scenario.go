package simulator

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/hub"
)

// ErrNotImplemented marks a step whose hub feature has not landed: the hub answered the
// request with "operation not available" or the endpoint does not exist. Such a step is
// reported with detail "not implemented", never skipped.
var ErrNotImplemented = errors.New("not implemented")

// Step names, in the order RunScenario runs them.
const (
	StepRegisterEmail               = "register_email"
	StepRegisterPhone               = "register_phone"
	StepLogin                       = "login"
	StepPasswordReset               = "password_reset"
	StepBindPhone                   = "bind_phone"
	StepBindBand                    = "bind_band"
	StepBindScale                   = "bind_scale"
	StepActivationLock              = "activation_lock"
	StepPairBandPhone               = "pair_band_phone"
	StepCrossAccountPairDenied      = "cross_account_pair_denied"
	StepCrossAccountSubscribeDenied = "cross_account_subscribe_denied"
	StepTelemetryRelay              = "telemetry_relay"
	StepOfflineCatchup              = "offline_catchup"
	StepSettingsSync                = "settings_sync"
	StepLostModeLock                = "lost_mode_lock"
	StepLostModeCallRestriction     = "lost_mode_call_restriction"
	StepUnbindRequiresPassword      = "unbind_requires_password"
	StepUnlockByOwner               = "unlock_by_owner"
	StepUnbindAndNewOwner           = "unbind_and_new_owner"
)

// StepNames lists the scenario's steps in order.
func StepNames() []string {
	ss := steps()
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.name
	}
	return names
}

// StepResult is the outcome of one step.
type StepResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	MS     int64  `json:"ms"`
	Detail string `json:"detail"`
}

// NotImplemented reports whether the step failed only because its hub feature is missing.
func (r StepResult) NotImplemented() bool { return !r.OK && r.Detail == ErrNotImplemented.Error() }

// Report is the outcome of a scenario run.
type Report struct {
	Steps []StepResult `json:"steps"`
	OK    bool         `json:"ok"`
}

// ScenarioOptions configure RunScenario.
type ScenarioOptions struct {
	Target Target
	// StepTimeout bounds each step (default 30s).
	StepTimeout time.Duration
	// OnStep, when set, is called after each step (to print progress).
	OnStep func(i, n int, r StepResult)
	// Logger receives details, such as the hub's answer behind a "not implemented".
	Logger *slog.Logger
}

type step struct {
	name  string
	needs []string
	run   func(s *story, ctx context.Context) (detail string, err error)
}

// steps is the story. Each step names the earlier steps whose state it uses; when one of
// those did not pass, the step is reported as failed (or not implemented, when that is why)
// without running.
func steps() []step {
	return []step{
		{StepRegisterEmail, nil, (*story).registerEmail},
		{StepRegisterPhone, nil, (*story).registerPhone},
		{StepLogin, []string{StepRegisterEmail, StepRegisterPhone}, (*story).login},
		{StepPasswordReset, []string{StepLogin}, (*story).passwordReset},
		{StepBindPhone, []string{StepPasswordReset}, (*story).bindPhone},
		{StepBindBand, []string{StepBindPhone}, (*story).bindBand},
		{StepBindScale, []string{StepBindPhone}, (*story).bindScale},
		{StepActivationLock, []string{StepBindBand}, (*story).activationLock},
		{StepPairBandPhone, []string{StepBindBand, StepBindScale}, (*story).pairBandPhone},
		{StepCrossAccountPairDenied, []string{StepActivationLock}, (*story).crossAccountPairDenied},
		{StepCrossAccountSubscribeDenied, []string{StepActivationLock}, (*story).crossAccountSubscribeDenied},
		{StepTelemetryRelay, []string{StepPairBandPhone}, (*story).telemetryRelay},
		{StepOfflineCatchup, []string{StepTelemetryRelay}, (*story).offlineCatchup},
		{StepSettingsSync, []string{StepBindBand}, (*story).settingsSync},
		{StepLostModeLock, []string{StepBindPhone}, (*story).lostModeLock},
		{StepLostModeCallRestriction, []string{StepLostModeLock}, (*story).lostModeCallRestriction},
		{StepUnbindRequiresPassword, []string{StepLostModeLock, StepBindScale}, (*story).unbindRequiresPassword},
		{StepUnlockByOwner, []string{StepLostModeLock}, (*story).unlockByOwner},
		{StepUnbindAndNewOwner, []string{StepTelemetryRelay, StepActivationLock}, (*story).unbindAndNewOwner},
	}
}

// RunScenario plays the story against opts.Target and reports every step. It returns when
// the last step is done; ctx cuts it short (the remaining steps then fail).
func RunScenario(ctx context.Context, opts ScenarioOptions) Report {
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := newStory(opts.Target, log)
	defer s.close()
	ss := steps()
	rep := Report{OK: true}
	results := map[string]StepResult{}
	for i, st := range ss {
		r := StepResult{Name: st.name}
		start := time.Now()
		blocked := ""
		for _, need := range st.needs {
			if nr := results[need]; !nr.OK {
				if nr.NotImplemented() {
					blocked = ErrNotImplemented.Error()
					log.Info("step needs a step that is not implemented", "step", st.name, "needs", need)
				} else if blocked == "" {
					blocked = fmt.Sprintf("not run: needs step %s, which failed", need)
				}
			}
		}
		if blocked != "" {
			r.Detail = blocked
		} else {
			sctx, cancel := context.WithTimeout(ctx, opts.StepTimeout)
			detail, err := runStep(sctx, st, s)
			cancel()
			switch {
			case errors.Is(err, ErrNotImplemented):
				log.Info("step not implemented by the hub", "step", st.name, "answer", err)
				r.Detail = ErrNotImplemented.Error()
			case err != nil:
				r.Detail = err.Error()
			default:
				r.OK, r.Detail = true, detail
			}
		}
		r.MS = time.Since(start).Milliseconds()
		results[st.name] = r
		rep.Steps = append(rep.Steps, r)
		rep.OK = rep.OK && r.OK
		if opts.OnStep != nil {
			opts.OnStep(i+1, len(ss), r)
		}
	}
	return rep
}

// runStep runs one step, turning a panic (a bug in the simulator) into a failed step so the
// report still lists every step.
func runStep(ctx context.Context, st step, s *story) (detail string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("simulator bug: panic: %v", p)
		}
	}()
	return st.run(s, ctx)
}

// notImplemented turns the hub's "this feature is not here yet" answers into
// ErrNotImplemented: an MQTT request refused as an unknown op (invalid, field "op"), or an
// HTTP endpoint that does not exist (a plain 404 or 405 from the router, or the portal's
// JSON "no such endpoint").
func notImplemented(err error) error {
	var re *client.RemoteError
	if errors.As(err, &re) && re.Code == hub.EInvalid && re.Field == "op" {
		return fmt.Errorf("%w: %w", ErrNotImplemented, err)
	}
	var ae *apiclient.Error
	if errors.As(err, &ae) && ae.Code == "http_error" && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed) {
		return fmt.Errorf("%w: %w", ErrNotImplemented, err)
	}
	// With the web portal mounted at "/", unknown API paths answer a JSON not_found with
	// this message (web/web.go); a missing device says "no such device…" instead.
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == hub.ENotFound && ae.Message == "no such endpoint" {
		return fmt.Errorf("%w: %w", ErrNotImplemented, err)
	}
	return err
}

// remoteError is the hub's answer in an MQTT request's error, or nil.
func remoteError(err error) *client.RemoteError {
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re
	}
	return nil
}

// remoteCode is the hub's error code in an MQTT answer, or "".
func remoteCode(err error) string {
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func pathEscape(s string) string { return url.PathEscape(s) }

// randInt is a uniform random number in [0, n).
func randInt(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		return 0 // crypto/rand does not fail on supported platforms
	}
	return v.Int64()
}

func decodeInto[T any](raw json.RawMessage) (T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("decode %s: %w", raw, err)
	}
	return v, nil
}
