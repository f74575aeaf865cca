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

var _ hub.CommandStore = (*DB)(nil)

const commandCols = `id, device_id, account_id, type, args, state, issued_by, created_at, delivered_at, acked_at, expires_at, detail`

func scanCommand(row interface{ Scan(...any) error }) (hub.Command, error) {
	var c hub.Command
	var args string
	var created, delivered, acked, expires int64
	if err := row.Scan(&c.ID, &c.DeviceID, &c.AccountID, &c.Type, &args, &c.State, &c.IssuedBy, &created, &delivered, &acked, &expires, &c.Detail); err != nil {
		return hub.Command{}, err
	}
	if args != "" {
		c.Args = json.RawMessage(args)
	}
	c.CreatedAt, c.DeliveredAt, c.AckedAt, c.ExpiresAt = fromMS(created), fromMS(delivered), fromMS(acked), fromMS(expires)
	return c, nil
}

// CreateCommand stores a command and enters or leaves lost mode in the same transaction, so
// a lock is never stored without its lost mode (or the other way round).
func (db *DB) CreateCommand(ctx context.Context, c hub.Command, lm hub.LostModeChange) error {
	return db.tx(ctx, "commands.create", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO commands(`+commandCols+`) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.DeviceID, c.AccountID, c.Type, string(c.Args), c.State, c.IssuedBy, ms(c.CreatedAt), ms(c.DeliveredAt), ms(c.AckedAt), ms(c.ExpiresAt), c.Detail); err != nil {
			if isUnique(err) {
				return hub.Errorf(hub.EConflict, "command %s already exists", c.ID)
			}
			return fmt.Errorf("create command: %w", err)
		}
		switch {
		case lm.Enter != nil:
			return enterLostMode(ctx, tx, *lm.Enter)
		case lm.Leave:
			return leaveLostMode(ctx, tx, c.DeviceID)
		}
		return nil
	})
}

// CommandByID returns one command of the device.
func (db *DB) CommandByID(ctx context.Context, deviceID, id string) (hub.Command, error) {
	defer db.observed("commands.by_id", time.Now())
	c, err := scanCommand(db.reader.QueryRowContext(ctx, `SELECT `+commandCols+` FROM commands WHERE id = ? AND device_id = ?`, id, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Command{}, notFound("command")
	}
	if err != nil {
		return hub.Command{}, fmt.Errorf("command: %w", err)
	}
	return c, nil
}

func (db *DB) queryCommands(ctx context.Context, op, q string, args ...any) ([]hub.Command, error) {
	defer db.observed(op, time.Now())
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	out := []hub.Command{}
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CommandsByDevice lists the commands an account issued to a device, newest first.
func (db *DB) CommandsByDevice(ctx context.Context, deviceID, accountID string, limit int) ([]hub.Command, error) {
	return db.queryCommands(ctx, "commands.by_device",
		`SELECT `+commandCols+` FROM commands WHERE device_id = ? AND account_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`,
		deviceID, accountID, limit)
}

// OpenCommands lists the device's queued and delivered commands in the order they were
// issued (rowid breaks ties within one millisecond).
func (db *DB) OpenCommands(ctx context.Context, deviceID string) ([]hub.Command, error) {
	return db.queryCommands(ctx, "commands.open",
		`SELECT `+commandCols+` FROM commands WHERE device_id = ? AND state IN ('queued', 'delivered') ORDER BY created_at, rowid`, deviceID)
}

// MarkCommandDelivered moves a queued command to delivered (other states are left alone).
func (db *DB) MarkCommandDelivered(ctx context.Context, id string, at time.Time) error {
	return db.small.do(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE commands SET state = 'delivered', delivered_at = ? WHERE id = ? AND state = 'queued'`, ms(at), id)
		return wrapf(err, "mark command delivered")
	})
}

// FinishCommand records an acknowledgement. A late acknowledgement of an expired command is
// still recorded: the device did carry it out, which is what the owner wants to know.
func (db *DB) FinishCommand(ctx context.Context, deviceID, id, state, detail string, at time.Time) (bool, error) {
	// Devices also ack what the hub never stored as a command (settings and profile events,
	// pairing notices): those are answered from a read, without the writer and a flush. A
	// command is committed before it is sent, so the read sees any command a device can ack.
	var open bool
	if err := db.reader.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM commands
		WHERE id = ? AND device_id = ? AND state IN ('queued', 'delivered', 'expired'))`, id, deviceID).Scan(&open); err != nil {
		return false, fmt.Errorf("find command: %w", err)
	}
	if !open {
		return false, nil
	}
	var changed bool
	err := db.tx(ctx, "commands.finish", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE commands SET state = ?, detail = ?, acked_at = ?,
			delivered_at = CASE WHEN delivered_at = 0 THEN ? ELSE delivered_at END
			WHERE id = ? AND device_id = ? AND state IN ('queued', 'delivered', 'expired')`,
			state, detail, ms(at), ms(at), id, deviceID)
		if err != nil {
			return fmt.Errorf("finish command: %w", err)
		}
		n, _ := res.RowsAffected()
		changed = n > 0
		return nil
	})
	return changed, err
}

// ExpireCommands marks open commands past their deadline expired.
func (db *DB) ExpireCommands(ctx context.Context, deviceID string, now time.Time) (int, error) {
	var n int64
	err := db.tx(ctx, "commands.expire", func(tx *sql.Tx) error {
		q := `UPDATE commands SET state = 'expired', detail = 'not carried out in time'
			WHERE state IN ('queued', 'delivered') AND expires_at <= ?`
		args := []any{ms(now)}
		if deviceID != "" {
			q += ` AND device_id = ?`
			args = append(args, deviceID)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("expire commands: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}
