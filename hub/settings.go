package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
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

// ProfileApplied is which version of its account's profile a device applied.
type ProfileApplied struct {
	DeviceID string
	// Version is the profile version the device last reported applying in its current
	// binding (0: none yet).
	Version int64
}

// ProfileStore keeps, per device, the account profile version it applied, so that a device
// that missed a change gets the profile when it next subscribes, and the owner sees who is
// behind. A record counts only for the binding it was written in: a device bound again
// starts from version 0.
type ProfileStore interface {
	// SetProfileApplied records the version the device reports; not_bound when the device is
	// not (or no longer) bound to accountID.
	SetProfileApplied(ctx context.Context, deviceID, accountID string, version int64, at time.Time) error
	// ProfileAppliedBy returns the version the device applied in its current binding to
	// accountID (0 when it never reported).
	ProfileAppliedBy(ctx context.Context, deviceID, accountID string) (int64, error)
	// ProfileApplied lists every device bound to accountID with the version it applied, in
	// binding order.
	ProfileApplied(ctx context.Context, accountID string) ([]ProfileApplied, error)
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
	if err != nil && ErrorCode(err) != ENotFound {
		return devices.SettingsResult{}, err
	}
	res := d.result(deviceID)
	if name == settingsProfile {
		if res.Devices, err = h.profileDevices(ctx, accountID, d.Version); err != nil {
			return devices.SettingsResult{}, err
		}
	}
	return res, nil
}

// profileDevices lists the account's devices with the profile version each applied.
func (h *Hub) profileDevices(ctx context.Context, accountID string, version int64) ([]devices.ProfileDevice, error) {
	ps, err := h.store.ProfileApplied(ctx, accountID)
	if err != nil {
		return nil, fmt.Errorf("profile applied: %w", err)
	}
	out := make([]devices.ProfileDevice, 0, len(ps))
	for _, p := range ps {
		out = append(out, devices.ProfileDevice{DeviceID: p.DeviceID, AppliedVersion: p.Version, Behind: p.Version < version})
	}
	return out, nil
}

// SetSettings applies a merge patch to the desired settings if baseVersion is still the
// current version; otherwise it fails with stale_version and the current version in the
// message (never last-writer-wins). The device is sent the change.
func (h *Hub) SetSettings(ctx context.Context, accountID, deviceID string, patch json.RawMessage, baseVersion int64) (devices.SettingsResult, error) {
	owner, name, err := h.settingsKey(ctx, accountID, deviceID)
	if err != nil {
		return devices.SettingsResult{}, err
	}
	if err := devices.ValidateSettingsDoc(patch); err != nil {
		return devices.SettingsResult{}, FieldError(EInvalid, "args.desired", "desired %s", err)
	}
	cur, err := h.sync.store.Settings(ctx, owner, name)
	if err != nil && ErrorCode(err) != ENotFound {
		return devices.SettingsResult{}, err
	}
	if cur.Version != baseVersion {
		return devices.SettingsResult{}, staleError(cur.Version)
	}
	merged, err := devices.MergePatch(cur.Desired, patch)
	if err != nil {
		return devices.SettingsResult{}, fmt.Errorf("settings: %w", err)
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
				return devices.SettingsResult{}, staleError(now.Version)
			}
		}
		return devices.SettingsResult{}, err
	}
	res := d.result(deviceID)
	if name == settingsProfile {
		h.pushProfile(ctx, accountID, d)
		if res.Devices, err = h.profileDevices(ctx, accountID, d.Version); err != nil {
			// The write is done and sent; only the view of who applied it is missing.
			h.log.Warn("profile devices", "account", accountID, "error", err)
		}
		return res, nil
	}
	// Only to a connected device, with presence read after the commit (as for owner
	// commands; the store is the queue). A device offline now gets the delta when it next
	// subscribes (SettingsOnConnect): the current state once, not a persistent session's
	// backlog of intermediate patches, whose queued packet IDs also made mochi refuse the
	// device's SUBSCRIBE on reconnect (0x91) before the broker kept the two ID spaces apart.
	if h.deviceOnline(ctx, deviceID) {
		h.sendCommand(ctx, deviceID, devices.CmdSettings, devices.SettingsArgs{Desired: patch, Version: d.Version})
	}
	return res, nil
}

// pushProfile sends the changed profile, whole, to every connected device of the account.
// Devices that are offline now (or miss it) get it when they next subscribe, because they
// have not reported its version.
func (h *Hub) pushProfile(ctx context.Context, accountID string, d SettingsDoc) {
	ds, err := h.store.DevicesByAccount(ctx, accountID)
	if err != nil {
		h.log.Warn("push profile: list devices", "account", accountID, "error", err)
		return
	}
	args := profileArgs(d)
	for _, dev := range ds {
		if dev.Online {
			h.sendCommand(ctx, dev.ID, devices.CmdSettings, args)
		}
	}
}

// profileArgs is the "settings" command that carries the profile: the whole document, so a
// device that missed versions replaces its copy (a merge patch on an old copy would keep
// keys removed meanwhile).
func profileArgs(d SettingsDoc) devices.SettingsArgs {
	desired := d.Desired
	if len(desired) == 0 {
		desired = json.RawMessage("{}")
	}
	return devices.SettingsArgs{Doc: devices.DocProfile, Desired: desired, Version: d.Version}
}

// staleError refuses a write against an old base_version, with the current version (in the
// message for people, and as a field for programs).
func staleError(v int64) *Error {
	return &Error{Code: EStale, Field: "args.base_version", CurrentVersion: &v,
		Message: "the settings changed since base_version; the current version is " + itoa(v)}
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
	// A version the settings never had is refused, as for the profile: recorded, it would
	// stop every later on-connect delta (the device would look ahead of what is desired).
	// Desired versions only grow, so reading first cannot refuse an honest report.
	cur, err := h.sync.store.Settings(ctx, id.DeviceID, settingsDevice)
	if err != nil && ErrorCode(err) != ENotFound {
		return err
	}
	if version > cur.Version {
		return FieldError(EInvalid, "args.version", "the settings' current version is %d", cur.Version)
	}
	_, err = h.sync.store.SetReported(ctx, id.DeviceID, settingsDevice, id.AccountID, reported, version, h.clock.Now())
	return err
}

// ReportProfile records the account profile version a device applied. A version the profile
// never had is refused: the device would otherwise never be sent the real one.
func (h *Hub) ReportProfile(ctx context.Context, id devices.Identity, version int64) error {
	if h.sync == nil {
		return Errorf(EInternal, "settings are not configured")
	}
	if !id.Bound() {
		return Errorf(ENotBound, "this device is not bound to an account")
	}
	cur, err := h.sync.store.Settings(ctx, id.AccountID, settingsProfile)
	if err != nil && ErrorCode(err) != ENotFound {
		return err
	}
	if version > cur.Version {
		return FieldError(EInvalid, "args.version", "the profile's current version is %d", cur.Version)
	}
	return h.store.SetProfileApplied(ctx, id.DeviceID, id.AccountID, version, h.clock.Now())
}

// SettingsOnConnect sends a device what changed while it was away: the desired settings it
// has not reported yet (the delta between desired and reported) and, when it has not applied
// the account profile's current version, the profile. The transport calls it when the
// device's SUBSCRIBE covering its commands topic was granted, not at session start, when a
// clean session has no subscription yet and the send would reach nobody. It only reads
// unless something is behind.
func (h *Hub) SettingsOnConnect(ctx context.Context, id devices.Identity) {
	if h.sync == nil || !id.Bound() {
		return
	}
	h.deviceSettingsOnConnect(ctx, id)
	h.profileOnConnect(ctx, id)
}

func (h *Hub) profileOnConnect(ctx context.Context, id devices.Identity) {
	d, err := h.sync.store.Settings(ctx, id.AccountID, settingsProfile)
	if err != nil {
		if ErrorCode(err) != ENotFound {
			h.log.Warn("profile on connect", "device", id.DeviceID, "error", err)
		}
		return
	}
	applied, err := h.store.ProfileAppliedBy(ctx, id.DeviceID, id.AccountID)
	if err != nil {
		h.log.Warn("profile on connect", "device", id.DeviceID, "error", err)
		return
	}
	if d.Version == 0 || applied >= d.Version {
		return
	}
	h.sendCommand(ctx, id.DeviceID, devices.CmdSettings, profileArgs(d))
}

func (h *Hub) deviceSettingsOnConnect(ctx context.Context, id devices.Identity) {
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

// settingsDelta returns the merge patch that brings a device from what it reported to what is
// desired.
func settingsDelta(desired, reported json.RawMessage) (json.RawMessage, error) {
	var d, r map[string]any
	if err := json.Unmarshal(desired, &d); err != nil {
		return nil, err
	}
	if len(reported) > 0 {
		if err := json.Unmarshal(reported, &r); err != nil {
			return nil, err
		}
	}
	return json.Marshal(mergeDiff(r, d))
}

// mergeDiff is the JSON merge patch (RFC 7386) that turns from into to: changed values,
// nested objects as their own diffs, and null for every key to no longer has, so a device
// that missed the removal of a setting (a patch with null) forgets it too.
func mergeDiff(from, to map[string]any) map[string]any {
	out := map[string]any{}
	for k, tv := range to {
		fv, ok := from[k]
		tm, tIsObj := tv.(map[string]any)
		fm, fIsObj := fv.(map[string]any)
		switch {
		case ok && tIsObj && fIsObj:
			if sub := mergeDiff(fm, tm); len(sub) > 0 {
				out[k] = sub
			}
		case !ok || !reflect.DeepEqual(fv, tv):
			out[k] = tv
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			out[k] = nil
		}
	}
	return out
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
		res, err := h.GetSettings(ctx, id.AccountID, target)
		if !devices.IsController(id.Type) {
			res.Devices = nil // which devices the account has is for the owner and controllers
		}
		return res, err
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
		if args.Doc == devices.DocProfile {
			return nil, h.ReportProfile(ctx, id, args.Version)
		}
		return nil, h.ReportSettings(ctx, id, args.Reported, args.Version)
	}
}
