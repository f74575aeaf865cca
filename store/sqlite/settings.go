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

// SetProfileApplied records the profile version a device applied, for the binding it has
// now. The binding is read in the same statement, so a report racing with an unbind cannot
// be filed under the next binding.
func (db *DB) SetProfileApplied(ctx context.Context, deviceID, accountID string, version int64, at time.Time) error {
	return db.tx(ctx, "settings.profile_applied", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO profile_applied(device_id, account_id, bound_at, version, updated_at)
			SELECT id, account_id, bound_at, ?, ? FROM devices WHERE id = ? AND account_id = ?
			ON CONFLICT(device_id) DO UPDATE SET account_id = excluded.account_id, bound_at = excluded.bound_at,
				version = excluded.version, updated_at = excluded.updated_at`,
			version, ms(at), deviceID, accountID)
		if err != nil {
			return fmt.Errorf("set profile applied: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("set profile applied: %w", err)
		}
		if n == 0 {
			return hub.Errorf(hub.ENotBound, "the device is not bound to this account")
		}
		return nil
	})
}

// ProfileAppliedBy returns the profile version the device applied in its current binding to
// accountID, 0 when it never reported in this binding.
func (db *DB) ProfileAppliedBy(ctx context.Context, deviceID, accountID string) (int64, error) {
	defer db.observed("settings.profile_applied_by", time.Now())
	var v int64
	err := db.reader.QueryRowContext(ctx, `SELECT p.version FROM profile_applied p JOIN devices d ON d.id = p.device_id
		WHERE p.device_id = ? AND p.account_id = ? AND d.account_id = p.account_id AND d.bound_at = p.bound_at`,
		deviceID, accountID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("profile applied by %s: %w", deviceID, err)
	}
	return v, nil
}

// ProfileApplied lists the account's bound devices with the profile version each applied in
// its current binding (0: none), in binding order.
func (db *DB) ProfileApplied(ctx context.Context, accountID string) ([]hub.ProfileApplied, error) {
	defer db.observed("settings.profile_applied", time.Now())
	rows, err := db.reader.QueryContext(ctx, `SELECT d.id, COALESCE(p.version, 0) FROM devices d
		LEFT JOIN profile_applied p ON p.device_id = d.id AND p.account_id = d.account_id AND p.bound_at = d.bound_at
		WHERE d.account_id = ? ORDER BY d.bound_at, d.id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("profile applied: %w", err)
	}
	defer rows.Close()
	var out []hub.ProfileApplied
	for rows.Next() {
		var p hub.ProfileApplied
		if err := rows.Scan(&p.DeviceID, &p.Version); err != nil {
			return nil, fmt.Errorf("profile applied: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("profile applied: %w", err)
	}
	return out, nil
}
