package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// CreatePairing stores a pairing.
func (s *SyncLog) CreatePairing(ctx context.Context, p hub.Pairing) error {
	return s.db.tx(ctx, "pairings.create", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO pairings(controller_id, gadget_id, account_id, created_at) VALUES(?, ?, ?, ?)`,
			p.ControllerID, p.GadgetID, p.AccountID, ms(p.CreatedAt))
		if isUnique(err) {
			return hub.Errorf(hub.EConflict, "these devices are already paired")
		}
		return wrapf(err, "create pairing")
	})
}

// DeletePairing removes a pairing.
func (s *SyncLog) DeletePairing(ctx context.Context, controllerID, gadgetID string) error {
	return s.db.tx(ctx, "pairings.delete", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM pairings WHERE controller_id = ? AND gadget_id = ?`, controllerID, gadgetID)
		if err != nil {
			return fmt.Errorf("delete pairing: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return hub.Errorf(hub.ENotFound, "these devices are not paired")
		}
		return nil
	})
}

// PairingsOf lists a device's pairings, on either side.
func (s *SyncLog) PairingsOf(ctx context.Context, deviceID string) ([]hub.Pairing, error) {
	defer s.db.observed("pairings.of", time.Now())
	rows, err := s.db.reader.QueryContext(ctx, `SELECT controller_id, gadget_id, account_id, created_at FROM pairings
		WHERE controller_id = ?1 OR gadget_id = ?1 ORDER BY created_at`, deviceID)
	if err != nil {
		return nil, fmt.Errorf("pairings: %w", err)
	}
	return scanPairings(rows, "pairings")
}

// PairingsOfAccount lists the account's pairings whose two devices are both bound to the
// account now, oldest first, in one query: the device lists show every device's partners.
// It walks the account's controllers (devices_account index) into the pairings primary key,
// which starts with controller_id, because pairings has no index on account_id and every
// pairing has exactly one controller. Checking the gadget's account as well keeps another
// account's device out even if a pairing outlived a binding.
func (s *SyncLog) PairingsOfAccount(ctx context.Context, accountID string) ([]hub.Pairing, error) {
	defer s.db.observed("pairings.of_account", time.Now())
	rows, err := s.db.reader.QueryContext(ctx, `SELECT p.controller_id, p.gadget_id, p.account_id, p.created_at
		FROM devices c
		JOIN pairings p ON p.controller_id = c.id
		JOIN devices g ON g.id = p.gadget_id
		WHERE c.account_id = ?1 AND g.account_id = ?1 AND p.account_id = ?1
		ORDER BY p.created_at, p.controller_id, p.gadget_id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("account pairings: %w", err)
	}
	return scanPairings(rows, "account pairings")
}

var _ hub.AccountPairingStore = (*SyncLog)(nil)

// scanPairings reads pairing rows (controller_id, gadget_id, account_id, created_at).
func scanPairings(rows *sql.Rows, op string) ([]hub.Pairing, error) {
	defer rows.Close()
	var out []hub.Pairing
	for rows.Next() {
		var p hub.Pairing
		var created int64
		if err := rows.Scan(&p.ControllerID, &p.GadgetID, &p.AccountID, &created); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		p.CreatedAt = fromMS(created)
		out = append(out, p)
	}
	return out, wrapf(rows.Err(), op)
}
