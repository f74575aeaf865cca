package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// BrokerStateOp is one change to the broker's persisted session state: a put when Value is
// non-nil, a delete otherwise (of every key starting with Key when Prefix is set).
type BrokerStateOp struct {
	Key    string
	Kind   string
	Value  []byte
	Prefix bool
}

// BrokerState keeps the embedded broker's sessions, subscriptions, in-flight and retained
// messages in the same database as everything else.
type BrokerState struct {
	db    *DB
	group *groupCommitter
}

// BrokerState returns the broker-state writer of the database (writes are group-committed).
// Each call starts a writer goroutine that Close stops: call it once per process.
func (db *DB) BrokerState() *BrokerState {
	return &BrokerState{db: db, group: newGroupCommitter(db, "broker_state.apply", 512)}
}

// Apply writes the changes durably (it returns after the commit that holds them).
func (s *BrokerState) Apply(ctx context.Context, ops ...BrokerStateOp) error {
	return s.group.do(ctx, func(tx *sql.Tx) error {
		for _, op := range ops {
			var err error
			switch {
			case op.Value == nil && op.Prefix && op.Key != "":
				upper := []byte(op.Key)
				upper[len(upper)-1]++ // callers' prefixes end in ':', never 0xff
				_, err = tx.Exec(`DELETE FROM broker_state WHERE key >= ? AND key < ?`, op.Key, string(upper))
			case op.Value == nil:
				_, err = tx.Exec(`DELETE FROM broker_state WHERE key = ?`, op.Key)
			default:
				_, err = tx.Exec(`INSERT INTO broker_state(key, kind, value) VALUES(?, ?, ?)
					ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, value = excluded.value`,
					op.Key, op.Kind, op.Value)
			}
			if err != nil {
				return fmt.Errorf("broker state %s: %w", op.Key, err)
			}
		}
		return nil
	})
}

// List returns every stored value of one kind.
func (s *BrokerState) List(ctx context.Context, kind string) ([][]byte, error) {
	return s.db.ListBrokerState(ctx, kind)
}

// ListBrokerState reads the broker's stored state of one kind (for tools and tests; it
// starts no writer).
func (db *DB) ListBrokerState(ctx context.Context, kind string) ([][]byte, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT value FROM broker_state WHERE kind = ? ORDER BY key`, kind)
	if err != nil {
		return nil, fmt.Errorf("list broker state %s: %w", kind, err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var v []byte
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("list broker state %s: %w", kind, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Close stops the writer after the commit under way.
func (s *BrokerState) Close() { s.group.close() }
