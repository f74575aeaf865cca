package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

const deviceCols = `id, type, name, COALESCE(account_id, ''), factory_hash, secret_hash, hardware_hash, created_at, bound_at, last_seen_at, online`

func scanDevice(row interface{ Scan(...any) error }) (hub.Device, error) {
	var d hub.Device
	var typ string
	var created, bound, seen int64
	var online int
	if err := row.Scan(&d.ID, &typ, &d.Name, &d.AccountID, &d.FactoryHash, &d.SecretHash, &d.HardwareHash, &created, &bound, &seen, &online); err != nil {
		return hub.Device{}, err
	}
	d.Type = devices.Type(typ)
	d.CreatedAt, d.BoundAt, d.LastSeenAt = fromMS(created), fromMS(bound), fromMS(seen)
	d.Online = online != 0
	return d, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// CreateDevices inserts devices in one transaction.
func (db *DB) CreateDevices(ctx context.Context, ds []hub.Device) error {
	return db.tx(ctx, "devices.create", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO devices(id, type, name, account_id, factory_hash, secret_hash, hardware_hash, created_at, bound_at)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("create devices: %w", err)
		}
		defer st.Close()
		for _, d := range ds {
			if _, err := st.ExecContext(ctx, d.ID, string(d.Type), d.Name, nullable(d.AccountID), d.FactoryHash, d.SecretHash, d.HardwareHash, ms(d.CreatedAt), ms(d.BoundAt)); err != nil {
				if isUnique(err) {
					return hub.Errorf(hub.EConflict, "device %s already exists", d.ID)
				}
				return fmt.Errorf("create device %s: %w", d.ID, err)
			}
		}
		return nil
	})
}

func (db *DB) deviceWhere(ctx context.Context, op, where string, arg any) (hub.Device, error) {
	defer db.observed(op, time.Now())
	d, err := scanDevice(db.reader.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Device{}, notFound("device")
	}
	if err != nil {
		return hub.Device{}, fmt.Errorf("%s: %w", op, err)
	}
	return d, nil
}

// DeviceByID returns one device.
func (db *DB) DeviceByID(ctx context.Context, id string) (hub.Device, error) {
	return db.deviceWhere(ctx, "devices.by_id", "id = ?", id)
}

// DeviceByHardware finds a controller by its hardware hash.
func (db *DB) DeviceByHardware(ctx context.Context, hash []byte) (hub.Device, error) {
	return db.deviceWhere(ctx, "devices.by_hardware", "hardware_hash = ?", hash)
}

// DevicesByAccount lists an account's devices, oldest binding first.
func (db *DB) DevicesByAccount(ctx context.Context, accountID string) ([]hub.Device, error) {
	defer db.observed("devices.by_account", time.Now())
	rows, err := db.reader.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE account_id = ? ORDER BY bound_at, id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("devices of account: %w", err)
	}
	defer rows.Close()
	var out []hub.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("devices of account: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// SaveBindCode replaces the device's bind code.
func (db *DB) SaveBindCode(ctx context.Context, c hub.BindCode) error {
	return db.tx(ctx, "bind_codes.save", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO bind_codes(device_id, code_hash, expires_at, attempts) VALUES(?, ?, ?, 0)
			ON CONFLICT(device_id) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = 0`,
			c.DeviceID, c.CodeHash, ms(c.ExpiresAt))
		return wrapf(err, "save bind code")
	})
}

// TakeBindCodeTry counts one try on the device's bind code and returns the code, in one
// statement, if the code is still valid at now and had tries left: parallel tries cannot
// all read "4 tries so far" and all be compared. Otherwise it counts nothing and fails with
// not_found, the message saying why (no code, expired, no tries left).
func (db *DB) TakeBindCodeTry(ctx context.Context, deviceID string, now time.Time, maxTries int) (hub.BindCode, error) {
	c := hub.BindCode{DeviceID: deviceID}
	err := db.tx(ctx, "bind_codes.try", func(tx *sql.Tx) error {
		var exp int64
		err := tx.QueryRowContext(ctx, `UPDATE bind_codes SET attempts = attempts + 1
			WHERE device_id = ? AND attempts < ? AND expires_at > ?
			RETURNING code_hash, expires_at, attempts`, deviceID, maxTries, ms(now)).Scan(&c.CodeHash, &exp, &c.Attempts)
		if err == nil {
			c.ExpiresAt = fromMS(exp)
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("bind code try: %w", err)
		}
		var attempts int
		switch err := tx.QueryRowContext(ctx, `SELECT expires_at, attempts FROM bind_codes WHERE device_id = ?`, deviceID).Scan(&exp, &attempts); {
		case errors.Is(err, sql.ErrNoRows):
			return hub.Errorf(hub.ENotFound, "no bind code")
		case err != nil:
			return fmt.Errorf("bind code try: %w", err)
		case attempts >= maxTries:
			return hub.Errorf(hub.ENotFound, "bind code has no tries left")
		default:
			return hub.Errorf(hub.ENotFound, "bind code expired")
		}
	})
	if err != nil {
		return hub.BindCode{}, err
	}
	return c, nil
}

// BindDevice binds the device and removes its bind code in one transaction. The account
// check is repeated inside the transaction so two owners racing cannot both win. With
// codeHash set, the code must still be there with that hash and is consumed here, so of
// parallel binds with the same right code only one binds (the others get invalid_code).
func (db *DB) BindDevice(ctx context.Context, deviceID, accountID string, secretHash, codeHash []byte, at time.Time) error {
	return db.tx(ctx, "devices.bind", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM bind_codes WHERE device_id = ?1 AND (?2 IS NULL OR code_hash = ?2)`, deviceID, codeHash)
		if err != nil {
			return fmt.Errorf("consume bind code: %w", err)
		}
		if codeHash != nil {
			if n, _ := res.RowsAffected(); n == 0 {
				return hub.Errorf(hub.EInvalidCode, "the bind code was used meanwhile")
			}
		}
		res, err = tx.ExecContext(ctx, `UPDATE devices SET account_id = ?, secret_hash = ?, bound_at = CASE WHEN account_id IS ? THEN bound_at ELSE ? END
			WHERE id = ? AND (account_id IS NULL OR account_id = ?)`, accountID, secretHash, accountID, ms(at), deviceID, accountID)
		if err != nil {
			return fmt.Errorf("bind device: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return hub.Errorf(hub.EDeviceLocked, "this device is locked to its owner's account")
		}
		return nil
	})
}

// UnbindDevice clears the binding and everything that hangs on it.
func (db *DB) UnbindDevice(ctx context.Context, deviceID string) error {
	return db.tx(ctx, "devices.unbind", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET account_id = NULL, secret_hash = NULL, bound_at = 0 WHERE id = ?`, deviceID); err != nil {
			return fmt.Errorf("unbind device: %w", err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM bind_codes WHERE device_id = ?`, deviceID)
		if err != nil {
			return fmt.Errorf("unbind device: %w", err)
		}
		return db.unbindHooks(ctx, tx, deviceID)
	})
}

// unbindHooks removes what other features keep per binding (pairings, sync cursors...).
func (db *DB) unbindHooks(ctx context.Context, tx *sql.Tx, deviceID string) error {
	for _, q := range unbindCleanup() {
		if _, err := tx.ExecContext(ctx, q, deviceID); err != nil {
			return fmt.Errorf("unbind cleanup: %w", err)
		}
	}
	return nil
}

// RenameDevice sets the device's name.
func (db *DB) RenameDevice(ctx context.Context, deviceID, name string) error {
	return db.tx(ctx, "devices.rename", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE devices SET name = ? WHERE id = ?`, name, deviceID)
		return wrapf(err, "rename device")
	})
}

// SetDeviceOnline records presence.
func (db *DB) SetDeviceOnline(ctx context.Context, deviceID string, online bool, at time.Time) error {
	return db.small.do(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE devices SET online = ?, last_seen_at = ? WHERE id = ?`, online, ms(at), deviceID)
		return wrapf(err, "device presence")
	})
}

// AppendAudit adds an audit entry.
func (db *DB) AppendAudit(ctx context.Context, e hub.AuditEntry) error {
	return db.small.do(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit(account_id, device_id, event, detail, actor, at) VALUES(?, ?, ?, ?, ?, ?)`,
			e.AccountID, e.DeviceID, e.Event, e.Detail, e.Actor, ms(e.At))
		return wrapf(err, "append audit")
	})
}

// AuditByAccount returns the newest entries first.
func (db *DB) AuditByAccount(ctx context.Context, accountID string, limit int) ([]hub.AuditEntry, error) {
	defer db.observed("audit.by_account", time.Now())
	rows, err := db.reader.QueryContext(ctx, `SELECT id, device_id, event, detail, actor, at FROM audit WHERE account_id = ? ORDER BY id DESC LIMIT ?`, accountID, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	out := []hub.AuditEntry{}
	for rows.Next() {
		e := hub.AuditEntry{AccountID: accountID}
		var at int64
		if err := rows.Scan(&e.ID, &e.DeviceID, &e.Event, &e.Detail, &e.Actor, &at); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}
