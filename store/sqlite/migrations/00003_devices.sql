-- +goose Up
-- Devices, their binding to an account, bind codes and the owner-readable audit log.
-- Secrets and hardware IDs are keyed hashes (HMAC-SHA256) only. Times are Unix milliseconds;
-- 0 means "not yet".
CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    type          TEXT NOT NULL CHECK (type IN ('phone', 'tablet', 'band', 'scale', 'router')),
    name          TEXT NOT NULL,
    account_id    TEXT REFERENCES accounts(id),
    factory_hash  BLOB,
    secret_hash   BLOB,
    hardware_hash BLOB UNIQUE,
    created_at    INTEGER NOT NULL,
    bound_at      INTEGER NOT NULL DEFAULT 0,
    last_seen_at  INTEGER NOT NULL DEFAULT 0,
    online        INTEGER NOT NULL DEFAULT 0,
    CHECK ((account_id IS NULL) = (bound_at = 0))
) STRICT;
CREATE INDEX devices_account ON devices(account_id) WHERE account_id IS NOT NULL;

CREATE TABLE bind_codes (
    device_id  TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device_id  TEXT NOT NULL DEFAULT '',
    event      TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    actor      TEXT NOT NULL DEFAULT '',
    at         INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_account ON audit(account_id, id);

-- +goose Down
DROP TABLE audit;
DROP TABLE bind_codes;
DROP TABLE devices;
