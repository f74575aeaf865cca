-- +goose Up
-- Pairings, the sync log with its per-controller cursors, and settings documents.
-- Times are Unix milliseconds, sample timestamps (ts) Unix nanoseconds.

-- A pairing joins one controller and one pairable gadget of the same account. The link key
-- is not kept: it is sent once to both sides and the hub has no use for it afterwards.
CREATE TABLE pairings (
    controller_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    gadget_id     TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    account_id    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (controller_id, gadget_id)
) STRICT;
CREATE INDEX pairings_gadget ON pairings(gadget_id);

-- The sync log: every accepted telemetry sample, in commit order. AUTOINCREMENT so a cursor
-- is never reused, even after retention emptied the table (cursors held by controllers must
-- keep meaning what they meant). A redelivered sample (same account, device, stream, seq) is
-- stored once.
CREATE TABLE sync_log (
    cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    wide       INTEGER NOT NULL, -- 1: relayed to every controller of the account
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (account_id, device_id, stream, seq)
) STRICT;
CREATE INDEX sync_log_account ON sync_log(account_id, cursor);

-- How far retention has deleted each account's log: a controller whose cursor is below this
-- is told about the gap.
CREATE TABLE sync_pruned (
    account_id TEXT PRIMARY KEY,
    through    INTEGER NOT NULL
) STRICT;

-- Each controller's durable cursor: the highest entry it confirmed with sync_ack.
CREATE TABLE sync_cursors (
    controller_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    account_id    TEXT NOT NULL,
    acked         INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- Settings documents: per device (owner = device ID) and per account (owner = account ID,
-- name = "profile"). desired is written by controllers against a version, reported by the
-- device.
CREATE TABLE settings (
    owner            TEXT NOT NULL,
    name             TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    desired          TEXT NOT NULL,
    version          INTEGER NOT NULL,
    reported         TEXT NOT NULL DEFAULT '',
    reported_version INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
) STRICT;

-- +goose Down
DROP TABLE settings;
DROP TABLE sync_cursors;
DROP TABLE sync_pruned;
DROP TABLE sync_log;
DROP TABLE pairings;
