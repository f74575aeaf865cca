package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// CreatePairing stores a pairing and its notices.
func (s *SyncLog) CreatePairing(ctx context.Context, p hub.Pairing, notices ...hub.PairingNotice) error {
	return s.db.tx(ctx, "pairings.create", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO pairings(controller_id, gadget_id, account_id, created_at) VALUES(?, ?, ?, ?)`,
			p.ControllerID, p.GadgetID, p.AccountID, ms(p.CreatedAt))
		if isUnique(err) {
			return hub.Errorf(hub.EConflict, "these devices are already paired")
		}
		if err != nil {
			return fmt.Errorf("create pairing: %w", err)
		}
		return putNotices(ctx, tx, notices)
	})
}

// DeletePairing removes a pairing and stores its notices.
func (s *SyncLog) DeletePairing(ctx context.Context, controllerID, gadgetID string, notices ...hub.PairingNotice) error {
	return s.db.tx(ctx, "pairings.delete", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM pairings WHERE controller_id = ? AND gadget_id = ?`, controllerID, gadgetID)
		if err != nil {
			return fmt.Errorf("delete pairing: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return hub.Errorf(hub.ENotFound, "these devices are not paired")
		}
		return putNotices(ctx, tx, notices)
	})
}

// ReplacePairingNotices forgets one device's notices and stores others.
func (s *SyncLog) ReplacePairingNotices(ctx context.Context, forget string, put []hub.PairingNotice) error {
	return s.db.tx(ctx, "pairings.notices_replace", func(tx *sql.Tx) error {
		if forget != "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pairing_notices WHERE device_id = ?`, forget); err != nil {
				return fmt.Errorf("forget pairing notices: %w", err)
			}
		}
		return putNotices(ctx, tx, put)
	})
}

func putNotices(ctx context.Context, tx *sql.Tx, notices []hub.PairingNotice) error {
	for _, n := range notices {
		// The newest news about a peer replaces the older, and its link key with it.
		_, err := tx.ExecContext(ctx, `INSERT INTO pairing_notices(id, device_id, peer_id, type, link_key, created_at)
			VALUES(?, ?, ?, ?, ?, ?)
			ON CONFLICT(device_id, peer_id) DO UPDATE SET id = excluded.id, type = excluded.type,
				link_key = excluded.link_key, created_at = excluded.created_at`,
			n.ID, n.DeviceID, n.PeerID, n.Type, n.LinkKey, ms(n.CreatedAt))
		if err != nil {
			return fmt.Errorf("store pairing notice: %w", err)
		}
	}
	return nil
}

// PairingNotices lists a device's notices, oldest first.
func (s *SyncLog) PairingNotices(ctx context.Context, deviceID string) ([]hub.PairingNotice, error) {
	defer s.db.observed("pairings.notices", time.Now())
	rows, err := s.db.reader.QueryContext(ctx, `SELECT id, device_id, peer_id, type, link_key, created_at
		FROM pairing_notices WHERE device_id = ? ORDER BY created_at, id`, deviceID)
	if err != nil {
		return nil, fmt.Errorf("pairing notices: %w", err)
	}
	defer rows.Close()
	var out []hub.PairingNotice
	for rows.Next() {
		var n hub.PairingNotice
		var created int64
		if err := rows.Scan(&n.ID, &n.DeviceID, &n.PeerID, &n.Type, &n.LinkKey, &created); err != nil {
			return nil, fmt.Errorf("pairing notices: %w", err)
		}
		n.CreatedAt = fromMS(created)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pairing notices: %w", err)
	}
	return out, nil
}

// DeletePairingNotice removes one acknowledged notice. Every command_ack comes here, and most
// acknowledge commands that are not pairing notices: those are answered from a read, without
// taking the one writer connection (which telemetry's group commit keeps busy) or a flush.
// A notice is committed before it is sent, so the read sees any notice a device can ack.
func (s *SyncLog) DeletePairingNotice(ctx context.Context, deviceID, id string) (bool, error) {
	var exists bool
	if err := s.db.reader.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM pairing_notices WHERE device_id = ? AND id = ?)`,
		deviceID, id).Scan(&exists); err != nil {
		return false, fmt.Errorf("find pairing notice: %w", err)
	}
	if !exists {
		return false, nil
	}
	var found bool
	err := s.db.tx(ctx, "pairings.notice_delete", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM pairing_notices WHERE device_id = ? AND id = ?`, deviceID, id)
		if err != nil {
			return fmt.Errorf("delete pairing notice: %w", err)
		}
		n, _ := res.RowsAffected()
		found = n > 0
		return nil
	})
	return found, err
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
