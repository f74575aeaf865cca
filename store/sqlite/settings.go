package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/devicehub/devicehub/hub"
)

func scanSettings(row *sql.Row) (hub.SettingsDoc, error) {
	var d hub.SettingsDoc
	var desired, reported string
	var updated int64
	if err := row.Scan(&d.Owner, &d.Name, &d.AccountID, &desired, &d.Version, &reported, &d.ReportedVersion, &updated); err != nil {
		return hub.SettingsDoc{}, err
	}
	d.Desired, d.UpdatedAt = json.RawMessage(desired), fromMS(updated)
	if reported != "" {
		d.Reported = json.RawMessage(reported)
	}
	return d, nil
}

const settingsCols = `owner, name, account_id, desired, version, reported, reported_version, updated_at`

func settingsIn(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, owner, name string) (hub.SettingsDoc, error) {
	d, err := scanSettings(q.QueryRowContext(ctx, `SELECT `+settingsCols+` FROM settings WHERE owner = ? AND name = ?`, owner, name))
	if errors.Is(err, sql.ErrNoRows) {
		return hub.SettingsDoc{}, notFound("settings")
	}
	if err != nil {
		return hub.SettingsDoc{}, fmt.Errorf("settings: %w", err)
	}
	return d, nil
}

// Settings returns one settings document.
func (s *SyncLog) Settings(ctx context.Context, owner, name string) (hub.SettingsDoc, error) {
	defer s.db.observed("settings.get", time.Now())
	return settingsIn(ctx, s.db.reader, owner, name)
}

// SetDesired writes the desired document if nobody else wrote since baseVersion.
func (s *SyncLog) SetDesired(ctx context.Context, owner, name, accountID string, desired json.RawMessage, baseVersion int64, at time.Time) (hub.SettingsDoc, error) {
	var out hub.SettingsDoc
	err := s.db.tx(ctx, "settings.set_desired", func(tx *sql.Tx) error {
		cur, err := settingsIn(ctx, tx, owner, name)
		switch {
		case hub.ErrorCode(err) == hub.ENotFound:
			if baseVersion != 0 {
				return &hub.Error{Code: hub.EStale, Field: "args.base_version", Message: "the settings have version 0"}
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO settings(owner, name, account_id, desired, version, updated_at) VALUES(?, ?, ?, ?, 1, ?)`,
				owner, name, accountID, string(desired), ms(at))
			if err != nil {
				return fmt.Errorf("set desired: %w", err)
			}
		case err != nil:
			return err
		case cur.Version != baseVersion:
			return &hub.Error{Code: hub.EStale, Field: "args.base_version", Message: fmt.Sprintf("the settings have version %d", cur.Version)}
		default:
			_, err = tx.ExecContext(ctx, `UPDATE settings SET desired = ?, version = version + 1, account_id = ?, updated_at = ? WHERE owner = ? AND name = ?`,
				string(desired), accountID, ms(at), owner, name)
			if err != nil {
				return fmt.Errorf("set desired: %w", err)
			}
		}
		out, err = settingsIn(ctx, tx, owner, name)
		return err
	})
	return out, err
}

// SetReported records what the device applied.
func (s *SyncLog) SetReported(ctx context.Context, owner, name, accountID string, reported json.RawMessage, version int64, at time.Time) (hub.SettingsDoc, error) {
	var out hub.SettingsDoc
	err := s.db.tx(ctx, "settings.set_reported", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings(owner, name, account_id, desired, version, reported, reported_version, updated_at)
			VALUES(?, ?, ?, '{}', 0, ?, ?, ?)
			ON CONFLICT(owner, name) DO UPDATE SET reported = excluded.reported, reported_version = excluded.reported_version, updated_at = excluded.updated_at`,
			owner, name, accountID, string(reported), version, ms(at))
		if err != nil {
			return fmt.Errorf("set reported: %w", err)
		}
		out, err = settingsIn(ctx, tx, owner, name)
		return err
	})
	return out, err
}
