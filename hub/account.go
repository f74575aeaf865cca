package hub

import (
	"context"
	"time"
)

// Account error codes, beside the shared ones in errors.go.
const (
	// EAccountPending: the password is right but the identifier was never confirmed.
	EAccountPending = "account_pending"
	// EChallengeFailed: the anti-automation challenge is missing, wrong, used or too easy.
	EChallengeFailed = "challenge_failed"
	// ETooLarge: a request body over the size limit.
	ETooLarge = "too_large"
)

// Account kinds: what the identifier is.
const (
	KindEmail = "email"
	KindPhone = "phone"
)

// Account statuses.
const (
	StatusPending = "pending"
	StatusActive  = "active"
)

// Verification purposes.
const (
	PurposeConfirm = "confirm"
	PurposeReset   = "reset"
)

// Account is one person's account. Identifier is the normalised email or E.164 phone number.
type Account struct {
	ID           string
	Identifier   string
	Kind         string
	Status       string
	PasswordHash string
	CreatedAt    time.Time
	ConfirmedAt  time.Time // zero while pending
}

// Verification is one code (and, for email confirmations, one link token) sent to an
// identifier. Only keyed hashes are kept, never the code or the token.
type Verification struct {
	ID        string
	AccountID string
	Purpose   string
	CodeHash  []byte
	TokenHash []byte // nil when no link was sent
	Attempts  int
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero until used
}

// Session is one login. The bearer token itself is only known to the client.
type Session struct {
	ID        string
	AccountID string
	TokenHash []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero unless revoked
	UserAgent string
	IP        string
}

// Message channels and outbox statuses.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"

	// MessagePending waits for the delivery worker (or for a retry).
	MessagePending = "pending"
	// MessageHeld stays in the outbox: the outbox driver, for development.
	MessageHeld   = "held"
	MessageSent   = "sent"
	MessageFailed = "failed"
)

// Message is one outgoing email or SMS, as kept in the durable outbox.
type Message struct {
	ID            string
	Channel       string
	To            string
	Subject       string
	Body          string
	CreatedAt     time.Time
	Status        string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	SentAt        time.Time
}

// AccountStore keeps accounts, verification codes, sessions and the outbox.
type AccountStore interface {
	// ServerKey returns the random key of the named purpose, creating it on first use. It keys
	// the HMACs of codes and link tokens and signs challenges.
	ServerKey(ctx context.Context, name string) ([]byte, error)

	// CreateAccount inserts a pending account with its first confirmation; conflict when the
	// identifier is taken.
	CreateAccount(ctx context.Context, a Account, v Verification) error
	AccountByIdentifier(ctx context.Context, identifier string) (Account, error)
	AccountByID(ctx context.Context, id string) (Account, error)
	// RestartPending sets a new password on a still-pending account and replaces its open
	// confirmation with v; conflict if the account was confirmed meanwhile.
	RestartPending(ctx context.Context, accountID, passwordHash string, v Verification) error

	// PutVerification stores v and drops the account's unused verifications of the same
	// purpose, so only the newest code works.
	PutVerification(ctx context.Context, v Verification) error
	// LatestVerification is the newest verification of that purpose, used or not.
	LatestVerification(ctx context.Context, accountID, purpose string) (Verification, error)
	VerificationByToken(ctx context.Context, tokenHash []byte) (Verification, error)
	// ReserveAttempt counts one try on the verification, atomically, unless it already has
	// maxAttempts: then ok is false and nothing changes. n is the new count. The hub reserves
	// before comparing the code, so parallel tries cannot pass the cap.
	ReserveAttempt(ctx context.Context, verificationID string, maxAttempts int) (n int, ok bool, err error)
	// Confirm marks the verification used and the account active, in one transaction;
	// conflict when the verification was used meanwhile.
	Confirm(ctx context.Context, verificationID string, now time.Time) error
	// ResetPassword marks the verification used, sets the password, activates the account
	// and revokes every session, in one transaction; conflict when already used.
	ResetPassword(ctx context.Context, verificationID, passwordHash string, now time.Time) error

	CreateSession(ctx context.Context, s Session) error
	// LoggedInFrom tells whether the account with this identifier has ever had a session
	// created from ip (live, expired or revoked); false for an unknown identifier.
	LoggedInFrom(ctx context.Context, identifier, ip string) (bool, error)
	SessionByToken(ctx context.Context, tokenHash []byte) (Session, error)
	// ListSessions returns the account's sessions that are neither revoked nor expired at now.
	ListSessions(ctx context.Context, accountID string, now time.Time) ([]Session, error)
	// RevokeSession revokes one of the account's sessions; not_found when it is not theirs.
	RevokeSession(ctx context.Context, accountID, sessionID string, now time.Time) error

	EnqueueMessage(ctx context.Context, m Message) error
	// DueMessages returns pending messages whose next attempt is at or before now, oldest first.
	DueMessages(ctx context.Context, now time.Time, limit int) ([]Message, error)
	// RecordDelivery stores the outcome of one attempt (status, attempts, next attempt,
	// last error, sent time) of m.
	RecordDelivery(ctx context.Context, m Message) error
	// ListOutbox returns the newest messages first, only those to `to` when it is not empty.
	ListOutbox(ctx context.Context, to string, limit int) ([]Message, error)
}

// Notifier delivers verification codes and notices to people. Notify returns once the
// message is durably in the outbox; delivery happens later, with retries.
type Notifier interface {
	Notify(ctx context.Context, m Message) error
}

// Principal is who a request acts for: an account, through one session.
type Principal struct {
	AccountID string
	SessionID string
}
