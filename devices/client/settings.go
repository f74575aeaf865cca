package client

import (
	"context"
	"fmt"

	"github.com/devicehub/devicehub/devices"
)

// ReportSettings sends a settings_report: the device's own settings it applied, or (with
// Doc devices.DocProfile) the account profile version it applied.
func (cl *Client) ReportSettings(ctx context.Context, r devices.SettingsReportArgs) error {
	if _, err := cl.Request(ctx, devices.OpSettingsReport, r); err != nil {
		return fmt.Errorf("settings_report: %w", err)
	}
	return nil
}

// ApplySettings is what a gadget (band, scale) does with a "settings" command: apply it to
// m, acknowledge it, and report what it holds now (its own settings, or the profile
// version). A command m cannot apply is acknowledged as failed and not reported. Commands of
// other types are left alone (nil).
func (cl *Client) ApplySettings(ctx context.Context, m *devices.SettingsModel, cmd devices.Command) error {
	if cmd.Type != devices.CmdSettings {
		return nil
	}
	rep, err := m.Apply(cmd)
	if err != nil {
		detail := err.Error()
		if len(detail) > 256 {
			detail = detail[:256]
		}
		if ackErr := cl.Ack(ctx, cmd.ID, devices.AckFailed, detail); ackErr != nil {
			return fmt.Errorf("%w (and acknowledging it: %w)", err, ackErr)
		}
		return err
	}
	if err := cl.Ack(ctx, cmd.ID, devices.AckAcknowledged, "applied"); err != nil {
		return fmt.Errorf("acknowledge settings: %w", err)
	}
	return cl.ReportSettings(ctx, rep)
}
