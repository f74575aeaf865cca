package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/devicehub/devicehub/devices"
)

// Settings documents. Each device has one ("device"), written by controllers (desired) and
// by the device (reported); each account has a profile, addressed in requests with the
// reserved device_id "profile" (generated device IDs start with "dev_", so it cannot clash).
const (
	settingsDevice  = "device"
	settingsProfile = "profile"
	// ProfileID is the device_id that names the account's profile document in settings
	// requests and HTTP paths.
	ProfileID = "profile"
)

// SettingsDoc is a stored settings document.
type SettingsDoc struct {
	Owner           string
	Name            string
	AccountID       string
	Desired         json.RawMessage
	Version         int64
	Reported        json.RawMessage
	ReportedVersion int64
	UpdatedAt       time.Time
}

func (d SettingsDoc) result(deviceID string) devices.SettingsResult {
	r := devices.SettingsResult{DeviceID: deviceID, Desired: d.Desired, Reported: d.Reported, Version: d.Version, ReportedVersion: d.ReportedVersion}
	if len(r.Desired) == 0 {
		r.Desired = json.RawMessage("{}")
	}
	return r
}

// settingsKey returns the document a request about deviceID addresses, after checking it
// belongs to the account.
func (h *Hub) settingsKey(ctx context.Context, accountID, deviceID string) (owner, name string, err error) {
	if h.sync == nil {
		return "", "", Errorf(EInternal, "settings are not configured")
	}
	if deviceID == ProfileID {
		return accountID, settingsProfile, nil
	}
	if _, err := h.ownedDevice(ctx, accountID, deviceID); err != nil {
		return "", "", err
	}
	return deviceID, settingsDevice, nil
}

// GetSettings returns a device's (or the account profile's) settings.
func (h *Hub) GetSettings(ctx context.Context, accountID, deviceID string) (devices.SettingsResult, error) {
	owner, name, err := h.settingsKey(ctx, accountID, deviceID)
	if err != nil {
		return devices.SettingsResult{}, err
	}
	d, err := h.sync.store.Settings(ctx, owner, name)
	if ErrorCode(err) == ENotFound {
		return SettingsDoc{}.result(deviceID), nil
	}
	if err != nil {
		return devices.SettingsResult{}, err
	}
	return d.result(deviceID), nil
}

// SetSettings applies a merge patch to the desired settings if baseVersion is still the
// current version; otherwise it fails with stale_version and the current version in the
// message (never last-writer-wins). The device is sent the change.
func (h *Hub) SetSettings(ctx context.Context, accountID, deviceID string, patch json.RawMessage, baseVersion int64) (devices.SettingsResult, error) {
	owner, name, err := h.settingsKey(ctx, accountID, deviceID)
	if err != nil {
		return devices.SettingsResult{}, err
	}
	var p any
	if err := json.Unmarshal(patch, &p); err != nil {
		return devices.SettingsResult{}, FieldError(EInvalid, "args.desired", "desired must be a JSON object")
	}
	if _, ok := p.(map[string]any); !ok {
		return devices.SettingsResult{}, FieldError(EInvalid, "args.desired", "desired must be a JSON object")
	}
	cur, err := h.sync.store.Settings(ctx, owner, name)
	if err != nil && ErrorCode(err) != ENotFound {
		return devices.SettingsResult{}, err
	}
	if cur.Version != baseVersion {
		return devices.SettingsResult{}, &Error{Code: EStale, Field: "args.base_version", Message: staleMessage(cur.Version)}
	}
	var target any = map[string]any{}
	if len(cur.Desired) > 0 {
		if err := json.Unmarshal(cur.Desired, &target); err != nil {
			return devices.SettingsResult{}, err
		}
	}
	merged, err := json.Marshal(mergePatch(target, p))
	if err != nil {
		return devices.SettingsResult{}, err
	}
	if len(merged) > devices.MaxSettingsSize {
		return devices.SettingsResult{}, FieldError(EInvalid, "args.desired", "the settings would exceed %d bytes", devices.MaxSettingsSize)
	}
	// The store repeats the version check in its transaction: two writers that both read
	// version n cannot both win.
	d, err := h.sync.store.SetDesired(ctx, owner, name, accountID, merged, baseVersion, h.clock.Now())
	if err != nil {
		if e := AsError(err); e != nil && e.Code == EStale {
			if now, err2 := h.sync.store.Settings(ctx, owner, name); err2 == nil {
				e.Message = staleMessage(now.Version)
			}
		}
		return devices.SettingsResult{}, err
	}
	if name == settingsDevice {
		h.sendCommand(ctx, deviceID, devices.CmdSettings, devices.SettingsArgs{Desired: patch, Version: d.Version})
	}
	return d.result(deviceID), nil
}

func staleMessage(v int64) string {
	return "the settings changed since base_version; the current version is " + itoa(v)
}

func itoa(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// ReportSettings records the settings a device applied.
func (h *Hub) ReportSettings(ctx context.Context, id devices.Identity, reported json.RawMessage, version int64) error {
	if h.sync == nil {
		return Errorf(EInternal, "settings are not configured")
	}
	if !id.Bound() {
		return Errorf(ENotBound, "this device is not bound to an account")
	}
	_, err := h.sync.store.SetReported(ctx, id.DeviceID, settingsDevice, id.AccountID, reported, version, h.clock.Now())
	return err
}

// SettingsOnConnect sends a device that just connected the desired settings it has not
// reported yet (the delta between desired and reported), so changes made while it was away
// reach it.
func (h *Hub) SettingsOnConnect(ctx context.Context, id devices.Identity) {
	if h.sync == nil || !id.Bound() {
		return
	}
	d, err := h.sync.store.Settings(ctx, id.DeviceID, settingsDevice)
	if err != nil {
		if ErrorCode(err) != ENotFound {
			h.log.Warn("settings on connect", "device", id.DeviceID, "error", err)
		}
		return
	}
	if d.Version == 0 || d.ReportedVersion >= d.Version {
		return
	}
	delta, err := settingsDelta(d.Desired, d.Reported)
	if err != nil {
		h.log.Warn("settings delta", "device", id.DeviceID, "error", err)
		return
	}
	h.sendCommand(ctx, id.DeviceID, devices.CmdSettings, devices.SettingsArgs{Desired: delta, Version: d.Version})
}

// mergePatch applies an RFC 7386 JSON merge patch.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
		} else {
			tm[k] = mergePatch(tm[k], v)
		}
	}
	return tm
}

// settingsDelta returns the top-level desired keys whose values differ from reported.
func settingsDelta(desired, reported json.RawMessage) (json.RawMessage, error) {
	var d, r map[string]json.RawMessage
	if err := json.Unmarshal(desired, &d); err != nil {
		return nil, err
	}
	if len(reported) > 0 {
		if err := json.Unmarshal(reported, &r); err != nil {
			return nil, err
		}
	}
	out := map[string]json.RawMessage{}
	for k, v := range d {
		if !jsonEqual(v, r[k]) {
			out[k] = v
		}
	}
	return json.Marshal(out)
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(b) == 0 {
		return false
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x) // maps marshal with sorted keys: a canonical form
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// handleSettingsRequest runs settings_get, settings_set and settings_report.
func (h *Hub) handleSettingsRequest(ctx context.Context, id devices.Identity, req devices.Request) (any, error) {
	if !id.Bound() {
		return nil, Errorf(ENotBound, "this device is not bound to an account")
	}
	switch req.Op {
	case devices.OpSettingsGet:
		args, err := devices.DecodeArgs[devices.SettingsGetArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		target := args.DeviceID
		if target == "" {
			target = id.DeviceID
		}
		if target != id.DeviceID && target != ProfileID && !devices.IsController(id.Type) {
			return nil, Errorf(EForbidden, "only a phone or tablet reads other devices' settings")
		}
		return h.GetSettings(ctx, id.AccountID, target)
	case devices.OpSettingsSet:
		args, err := devices.DecodeArgs[devices.SettingsSetArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		if err := requireBoundController(id); err != nil {
			return nil, err
		}
		return h.SetSettings(ctx, id.AccountID, args.DeviceID, args.Desired, args.BaseVersion)
	default:
		args, err := devices.DecodeArgs[devices.SettingsReportArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		return nil, h.ReportSettings(ctx, id, args.Reported, args.Version)
	}
}
