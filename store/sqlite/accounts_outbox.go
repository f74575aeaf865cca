package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/devicehub/devicehub/hub"
)

const outboxCols = `id, channel, recipient, subject, body, created_at, status, attempts, next_attempt_at, last_error, sent_at`

// EnqueueMessage writes a message to the outbox.
func (db *DB) EnqueueMessage(ctx context.Context, m hub.Message) error {
	return db.tx(ctx, "outbox.enqueue", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO outbox(`+outboxCols+`) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.Channel, m.To, m.Subject, m.Body, ms(m.CreatedAt), m.Status, m.Attempts, ms(m.NextAttemptAt), m.LastError, ms(m.SentAt))
		return wrapf(err, "enqueue message")
	})
}

// DueMessages returns pending messages due at now, oldest first.
func (db *DB) DueMessages(ctx context.Context, now time.Time, limit int) ([]hub.Message, error) {
	return db.queryOutbox(ctx, `SELECT `+outboxCols+` FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?
		ORDER BY next_attempt_at, created_at LIMIT ?`, ms(now), limit)
}

// RecordDelivery stores the outcome of a delivery attempt.
func (db *DB) RecordDelivery(ctx context.Context, m hub.Message) error {
	return db.tx(ctx, "outbox.record", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, sent_at = ? WHERE id = ?`,
			m.Status, m.Attempts, ms(m.NextAttemptAt), m.LastError, ms(m.SentAt), m.ID)
		if err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("message")
		}
		return nil
	})
}

// ListOutbox returns the newest messages first, only those to `to` when set.
func (db *DB) ListOutbox(ctx context.Context, to string, limit int) ([]hub.Message, error) {
	if to == "" {
		return db.queryOutbox(ctx, `SELECT `+outboxCols+` FROM outbox ORDER BY created_at DESC, rowid DESC LIMIT ?`, limit)
	}
	return db.queryOutbox(ctx, `SELECT `+outboxCols+` FROM outbox WHERE recipient = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`, to, limit)
}

func (db *DB) queryOutbox(ctx context.Context, q string, args ...any) ([]hub.Message, error) {
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query outbox: %w", err)
	}
	defer rows.Close()
	var out []hub.Message
	for rows.Next() {
		var m hub.Message
		var created, next, sent int64
		if err := rows.Scan(&m.ID, &m.Channel, &m.To, &m.Subject, &m.Body, &created, &m.Status, &m.Attempts, &next, &m.LastError, &sent); err != nil {
			return nil, fmt.Errorf("query outbox: %w", err)
		}
		m.CreatedAt, m.NextAttemptAt, m.SentAt = fromMS(created), fromMS(next), fromMS(sent)
		out = append(out, m)
	}
	return out, wrapf(rows.Err(), "query outbox")
}
