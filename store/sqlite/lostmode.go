package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// enterLostMode puts the device in lost mode, or updates the message and number of a lost
// mode already on (keeping when it began).
func enterLostMode(ctx context.Context, tx *sql.Tx, lm hub.LostMode) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO lost_mode(device_id, account_id, message, contact_number, since) VALUES(?, ?, ?, ?, ?)
		ON CONFLICT(device_id) DO UPDATE SET account_id = excluded.account_id, message = excluded.message, contact_number = excluded.contact_number`,
		lm.DeviceID, lm.AccountID, lm.Message, lm.ContactNumber, ms(lm.Since))
	return wrapf(err, "enter lost mode")
}

func leaveLostMode(ctx context.Context, tx *sql.Tx, deviceID string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM lost_mode WHERE device_id = ?`, deviceID)
	return wrapf(err, "leave lost mode")
}

// LostMode returns the device's lost mode. It reads on the writer connection: the check that
// refuses an unbind must see a lock committed an instant before.
func (db *DB) LostMode(ctx context.Context, deviceID string) (hub.LostMode, error) {
	defer db.observed("lost_mode.get", time.Now())
	lm := hub.LostMode{DeviceID: deviceID}
	var since int64
	err := db.writer.QueryRowContext(ctx, `SELECT account_id, message, contact_number, since FROM lost_mode WHERE device_id = ?`, deviceID).
		Scan(&lm.AccountID, &lm.Message, &lm.ContactNumber, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return hub.LostMode{}, notFound("lost mode")
	}
	if err != nil {
		return hub.LostMode{}, fmt.Errorf("lost mode: %w", err)
	}
	lm.Since = fromMS(since)
	return lm, nil
}

// latestLocationQuery is LatestLocation's read (a test checks its plan).
const latestLocationQuery = `SELECT ts, created_at, data FROM sync_log
	WHERE account_id = ?1 AND device_id = ?2 AND stream = 'location'
	  AND binding = (SELECT bound_at FROM devices WHERE id = ?2 AND account_id = ?1)
	ORDER BY seq DESC LIMIT 1`

// LatestLocation reads the newest location sample of the device from the sync log (owned by
// the sync feature, migrations 00004, 00007 and 00011: sample ts in Unix nanoseconds,
// created_at in milliseconds, data the validated body). Only samples of the device's current
// binding to accountID count: a previous owner's fixes are not the new owner's business.
// Seqs increase within a binding, so the newest is the highest seq, one seek in the log's
// partial index of location samples (account, device, binding, seq) however long the
// account's log is; walking the account's cursor index instead read all of it for a phone
// that never sent a fix.
func (db *DB) LatestLocation(ctx context.Context, accountID, deviceID string) (hub.Location, error) {
	defer db.observed("lost_mode.location", time.Now())
	var ts, created int64
	var data []byte
	err := db.reader.QueryRowContext(ctx, latestLocationQuery, accountID, deviceID).
		Scan(&ts, &created, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Location{}, notFound("location")
	}
	if err != nil {
		return hub.Location{}, fmt.Errorf("latest location: %w", err)
	}
	loc, err := hub.DecodeLocation(data, time.Unix(0, ts).UTC(), fromMS(created))
	if err != nil {
		return hub.Location{}, fmt.Errorf("latest location: %w", err)
	}
	return loc, nil
}
