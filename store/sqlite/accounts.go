package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/devicehub/devicehub/hub"
)

// ms stores a time as Unix milliseconds, the zero time as 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

func notFound(what string) error { return hub.Errorf(hub.ENotFound, "%s not found", what) }

// ServerKey returns the named 256-bit key, creating it on first use.
func (db *DB) ServerKey(ctx context.Context, name string) ([]byte, error) {
	var key []byte
	err := db.reader.QueryRowContext(ctx, `SELECT key FROM server_keys WHERE name = ?`, name).Scan(&key)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("server key %s: %w", name, err)
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	err = db.tx(ctx, "server_key.create", func(tx *sql.Tx) error {
		// Another process may have created it first: keep theirs.
		if _, err := tx.ExecContext(ctx, `INSERT INTO server_keys(name, key, created_at) VALUES(?, ?, ?) ON CONFLICT(name) DO NOTHING`,
			name, fresh, time.Now().UnixMilli()); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT key FROM server_keys WHERE name = ?`, name).Scan(&key)
	})
	if err != nil {
		return nil, fmt.Errorf("server key %s: %w", name, err)
	}
	return key, nil
}

const accountCols = `id, identifier, kind, status, password_hash, created_at, confirmed_at`

func scanAccount(row interface{ Scan(...any) error }) (hub.Account, error) {
	var a hub.Account
	var created, confirmed int64
	err := row.Scan(&a.ID, &a.Identifier, &a.Kind, &a.Status, &a.PasswordHash, &created, &confirmed)
	a.CreatedAt, a.ConfirmedAt = fromMS(created), fromMS(confirmed)
	return a, err
}

func insertVerification(ctx context.Context, tx *sql.Tx, v hub.Verification) error {
	// Only the newest code of a purpose works: older unused ones go.
	if _, err := tx.ExecContext(ctx, `DELETE FROM verifications WHERE account_id = ? AND purpose = ? AND used_at = 0`, v.AccountID, v.Purpose); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO verifications(id, account_id, purpose, code_hash, token_hash, attempts, created_at, expires_at, used_at)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`, v.ID, v.AccountID, v.Purpose, v.CodeHash, v.TokenHash, v.Attempts, ms(v.CreatedAt), ms(v.ExpiresAt), ms(v.UsedAt))
	return err
}

// CreateAccount inserts a pending account and its first verification.
func (db *DB) CreateAccount(ctx context.Context, a hub.Account, v hub.Verification) error {
	return db.tx(ctx, "accounts.create", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO accounts(`+accountCols+`) VALUES(?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.Identifier, a.Kind, a.Status, a.PasswordHash, ms(a.CreatedAt), ms(a.ConfirmedAt))
		if isUnique(err) {
			return &hub.Error{Code: hub.EConflict, Message: "identifier already has an account", Err: err}
		}
		if err != nil {
			return fmt.Errorf("insert account: %w", err)
		}
		if err := insertVerification(ctx, tx, v); err != nil {
			return fmt.Errorf("insert verification: %w", err)
		}
		return nil
	})
}

// AccountByIdentifier finds an account by its normalised identifier.
func (db *DB) AccountByIdentifier(ctx context.Context, identifier string) (hub.Account, error) {
	a, err := scanAccount(db.reader.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE identifier = ?`, identifier))
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Account{}, notFound("account")
	}
	return a, wrapf(err, "account by identifier")
}

// AccountByID finds an account by ID.
func (db *DB) AccountByID(ctx context.Context, id string) (hub.Account, error) {
	a, err := scanAccount(db.reader.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Account{}, notFound("account")
	}
	return a, wrapf(err, "account by id")
}

// RestartPending sets a pending account's password and replaces its open confirmation.
func (db *DB) RestartPending(ctx context.Context, accountID, passwordHash string, v hub.Verification) error {
	return db.tx(ctx, "accounts.restart_pending", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = ? WHERE id = ? AND status = 'pending'`, passwordHash, accountID)
		if err != nil {
			return fmt.Errorf("restart pending: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return hub.Errorf(hub.EConflict, "account is no longer pending")
		}
		return wrapf(insertVerification(ctx, tx, v), "restart pending: insert verification")
	})
}

// PutVerification stores v, dropping older unused verifications of the same purpose.
func (db *DB) PutVerification(ctx context.Context, v hub.Verification) error {
	return db.tx(ctx, "verifications.put", func(tx *sql.Tx) error {
		return wrapf(insertVerification(ctx, tx, v), "put verification")
	})
}

const verificationCols = `id, account_id, purpose, code_hash, token_hash, attempts, created_at, expires_at, used_at`

func scanVerification(row interface{ Scan(...any) error }) (hub.Verification, error) {
	var v hub.Verification
	var created, expires, used int64
	err := row.Scan(&v.ID, &v.AccountID, &v.Purpose, &v.CodeHash, &v.TokenHash, &v.Attempts, &created, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return v, notFound("verification")
	}
	v.CreatedAt, v.ExpiresAt, v.UsedAt = fromMS(created), fromMS(expires), fromMS(used)
	return v, err
}

// LatestVerification is the account's newest verification of that purpose.
func (db *DB) LatestVerification(ctx context.Context, accountID, purpose string) (hub.Verification, error) {
	v, err := scanVerification(db.reader.QueryRowContext(ctx, `SELECT `+verificationCols+` FROM verifications
		WHERE account_id = ? AND purpose = ? ORDER BY created_at DESC, rowid DESC LIMIT 1`, accountID, purpose))
	if hub.ErrorCode(err) == hub.ENotFound {
		return v, err
	}
	return v, wrapf(err, "latest verification")
}

// VerificationByToken finds the verification of an emailed link.
func (db *DB) VerificationByToken(ctx context.Context, tokenHash []byte) (hub.Verification, error) {
	v, err := scanVerification(db.reader.QueryRowContext(ctx, `SELECT `+verificationCols+` FROM verifications WHERE token_hash = ?`, tokenHash))
	if hub.ErrorCode(err) == hub.ENotFound {
		return v, err
	}
	return v, wrapf(err, "verification by token")
}

// ReserveAttempt counts one try unless the verification already has maxAttempts, in one
// statement, so parallel tries cannot both see a count below the cap.
func (db *DB) ReserveAttempt(ctx context.Context, verificationID string, maxAttempts int) (int, bool, error) {
	var n int
	found := true
	err := db.tx(ctx, "verifications.attempt", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE verifications SET attempts = attempts + 1
			WHERE id = ? AND attempts < ? RETURNING attempts`, verificationID, maxAttempts).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			found = false
			return nil
		}
		return wrapf(err, "reserve attempt")
	})
	if err != nil {
		return 0, false, err
	}
	if !found {
		return maxAttempts, false, nil
	}
	return n, true, nil
}

// useVerification marks a verification used unless it already was, and returns its account.
func useVerification(ctx context.Context, tx *sql.Tx, id string, now time.Time) (string, error) {
	var accountID string
	err := tx.QueryRowContext(ctx, `UPDATE verifications SET used_at = ? WHERE id = ? AND used_at = 0 RETURNING account_id`, ms(now), id).Scan(&accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", hub.Errorf(hub.EConflict, "code already used")
	}
	return accountID, wrapf(err, "use verification")
}

// Confirm marks the verification used and the account active.
func (db *DB) Confirm(ctx context.Context, verificationID string, now time.Time) error {
	return db.tx(ctx, "accounts.confirm", func(tx *sql.Tx) error {
		accountID, err := useVerification(ctx, tx, verificationID, now)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE accounts SET status = 'active', confirmed_at = ? WHERE id = ? AND status = 'pending'`, ms(now), accountID)
		return wrapf(err, "confirm account")
	})
}

// ResetPassword uses the verification, sets the password, activates the account and revokes
// every session.
func (db *DB) ResetPassword(ctx context.Context, verificationID, passwordHash string, now time.Time) error {
	return db.tx(ctx, "accounts.reset_password", func(tx *sql.Tx) error {
		accountID, err := useVerification(ctx, tx, verificationID, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = ?,
			confirmed_at = CASE WHEN status = 'pending' THEN ? ELSE confirmed_at END, status = 'active' WHERE id = ?`,
			passwordHash, ms(now), accountID); err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		_, err = tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = ? WHERE account_id = ? AND revoked_at = 0`, ms(now), accountID)
		return wrapf(err, "revoke sessions")
	})
}

// CreateSession stores a new session.
func (db *DB) CreateSession(ctx context.Context, s hub.Session) error {
	return db.tx(ctx, "sessions.create", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions(id, account_id, token_hash, created_at, expires_at, revoked_at, user_agent, ip)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?)`, s.ID, s.AccountID, s.TokenHash, ms(s.CreatedAt), ms(s.ExpiresAt), ms(s.RevokedAt), s.UserAgent, s.IP)
		return wrapf(err, "create session")
	})
}

// LoggedInFrom tells whether the identifier's account ever had a session from ip.
func (db *DB) LoggedInFrom(ctx context.Context, identifier, ip string) (bool, error) {
	var ok bool
	err := db.reader.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM sessions s JOIN accounts a ON a.id = s.account_id
		WHERE a.identifier = ? AND s.ip = ?)`, identifier, ip).Scan(&ok)
	return ok, wrapf(err, "logged in from")
}

const sessionCols = `id, account_id, token_hash, created_at, expires_at, revoked_at, user_agent, ip`

func scanSession(row interface{ Scan(...any) error }) (hub.Session, error) {
	var s hub.Session
	var created, expires, revoked int64
	err := row.Scan(&s.ID, &s.AccountID, &s.TokenHash, &created, &expires, &revoked, &s.UserAgent, &s.IP)
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = fromMS(created), fromMS(expires), fromMS(revoked)
	return s, err
}

// SessionByToken finds a session by the hash of its token.
func (db *DB) SessionByToken(ctx context.Context, tokenHash []byte) (hub.Session, error) {
	s, err := scanSession(db.reader.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE token_hash = ?`, tokenHash))
	if errors.Is(err, sql.ErrNoRows) {
		return s, notFound("session")
	}
	return s, wrapf(err, "session by token")
}

// ListSessions returns the account's live sessions, newest first.
func (db *DB) ListSessions(ctx context.Context, accountID string, now time.Time) ([]hub.Session, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE account_id = ? AND revoked_at = 0 AND expires_at > ? ORDER BY created_at DESC, id`, accountID, ms(now))
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []hub.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, s)
	}
	return out, wrapf(rows.Err(), "list sessions")
}

// RevokeSession revokes one of the account's sessions.
func (db *DB) RevokeSession(ctx context.Context, accountID, sessionID string, now time.Time) error {
	return db.tx(ctx, "sessions.revoke", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END
			WHERE id = ? AND account_id = ?`, ms(now), sessionID, accountID)
		if err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("session")
		}
		return nil
	})
}
