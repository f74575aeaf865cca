-- +goose Up
-- Random keys the hub creates on first use (HMAC of codes, challenge signatures).
CREATE TABLE server_keys (
    name       TEXT PRIMARY KEY,
    key        BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- Times are Unix milliseconds; 0 means "not yet" for optional times.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    identifier    TEXT NOT NULL UNIQUE, -- normalised email or E.164 phone
    kind          TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active')),
    password_hash TEXT NOT NULL,        -- argon2id PHC string
    created_at    INTEGER NOT NULL,
    confirmed_at  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Codes and link tokens, as HMACs only.
CREATE TABLE verifications (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('confirm', 'reset')),
    code_hash  BLOB NOT NULL,
    token_hash BLOB UNIQUE,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX verifications_account ON verifications(account_id, purpose, created_at);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    token_hash BLOB NOT NULL UNIQUE, -- SHA-256 of the bearer token
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL DEFAULT 0,
    user_agent TEXT NOT NULL DEFAULT '',
    ip         TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX sessions_account ON sessions(account_id, expires_at);

-- Every email and SMS is written here first; the delivery worker sends and records it.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'held', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    sent_at         INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox(recipient, created_at);

-- +goose Down
DROP TABLE outbox;
DROP TABLE sessions;
DROP TABLE verifications;
DROP TABLE accounts;
DROP TABLE server_keys;
