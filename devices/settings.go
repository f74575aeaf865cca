package devices

import (
	"encoding/json"
	"fmt"
	"sync"
)

// MergePatch applies an RFC 7386 JSON merge patch to doc (empty doc: {}) and returns the
// result. The hub merges settings_set into the desired settings with it, and devices merge
// each "settings" command into what they hold, so both sides compute the same document.
func MergePatch(doc, patch json.RawMessage) (json.RawMessage, error) {
	var target any = map[string]any{}
	if len(doc) > 0 {
		if err := json.Unmarshal(doc, &target); err != nil {
			return nil, fmt.Errorf("merge patch: document: %w", err)
		}
	}
	var p any
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, fmt.Errorf("merge patch: patch: %w", err)
	}
	out, err := json.Marshal(mergePatch(target, p))
	if err != nil {
		return nil, fmt.Errorf("merge patch: %w", err)
	}
	return out, nil
}

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

// SettingsModel is the device side of settings sync, as firmware or a phone app would keep
// it, without any MQTT: the device's own settings (each "settings" command's patch merged
// in) and the account profile (replaced whole by each profile command), each with the
// version applied. A band, a scale and PhoneModel use it alike; devices/client's
// ApplySettings ties it to a connection.
//
// Its methods are safe for concurrent use.
type SettingsModel struct {
	mu             sync.Mutex
	own            json.RawMessage
	ownVersion     int64
	profile        json.RawMessage
	profileVersion int64
}

// NewSettingsModel returns a device that has applied nothing yet.
func NewSettingsModel() *SettingsModel {
	return &SettingsModel{own: json.RawMessage("{}"), profile: json.RawMessage("{}")}
}

// Apply applies a "settings" command and returns the settings_report that tells the hub
// what the device holds now. A command older than what the device already applied (the hub
// may send one again on reconnect, and QoS 1 may deliver twice) changes nothing, but is
// still answered with a report, so the hub learns the device's real state.
func (m *SettingsModel) Apply(cmd Command) (SettingsReportArgs, error) {
	if cmd.Type != CmdSettings {
		return SettingsReportArgs{}, fmt.Errorf("apply settings: command type %q", cmd.Type)
	}
	var a SettingsArgs
	// Lenient on purpose (unlike the hub with requests): fields a newer hub adds must not
	// make an older device refuse its settings.
	if err := json.Unmarshal(cmd.Args, &a); err != nil {
		return SettingsReportArgs{}, fmt.Errorf("apply settings: %w", err)
	}
	if err := a.Validate(); err != nil {
		return SettingsReportArgs{}, fmt.Errorf("apply settings: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a.Doc == DocProfile {
		// The profile command carries the whole document: replacing (not merging) also
		// drops keys removed while the device was away.
		if a.Version >= m.profileVersion {
			m.profile, m.profileVersion = append(json.RawMessage(nil), a.Desired...), a.Version
		}
		return SettingsReportArgs{Doc: DocProfile, Version: m.profileVersion}, nil
	}
	// The same version again is merged again: the hub's on-connect delta carries the current
	// version, and merging the same patch twice gives the same document.
	if a.Version >= m.ownVersion {
		merged, err := MergePatch(m.own, a.Desired)
		if err != nil {
			return SettingsReportArgs{}, fmt.Errorf("apply settings: %w", err)
		}
		m.own, m.ownVersion = merged, a.Version
	}
	return SettingsReportArgs{Reported: append(json.RawMessage(nil), m.own...), Version: m.ownVersion}, nil
}

// Settings returns the device's own settings and their version.
func (m *SettingsModel) Settings() (json.RawMessage, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append(json.RawMessage(nil), m.own...), m.ownVersion
}

// Profile returns the account profile the device holds and its version (0: none yet).
func (m *SettingsModel) Profile() (json.RawMessage, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append(json.RawMessage(nil), m.profile...), m.profileVersion
}
