-- +goose Up
-- Owner commands to devices (locate, ring, lock, unlock, wipe) and lost mode.
-- Times are Unix milliseconds; 0 means "not yet".

-- A command is stored before it is sent, so it survives a restart and is sent again when its
-- device connects, until it is acknowledged, fails or expires. account_id is the account that
-- issued it: an owner only ever sees the commands of their own account.
CREATE TABLE commands (
    id           TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    account_id   TEXT NOT NULL,
    type         TEXT NOT NULL,
    args         TEXT NOT NULL DEFAULT '{}',
    state        TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'acknowledged', 'failed', 'expired')),
    issued_by    TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL DEFAULT 0,
    acked_at     INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL,
    detail       TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX commands_device ON commands(device_id, created_at);
-- Only commands still to be carried out are visited by resends and expiry.
CREATE INDEX commands_open ON commands(expires_at) WHERE state IN ('queued', 'delivered');

-- Lost mode per device. A row means the device is in lost mode; it is deleted when the
-- owner unlocks it (by command or with the password on the device). It is kept apart from
-- the devices table, and survives a wipe: lost mode is the hub's state, not the phone's.
CREATE TABLE lost_mode (
    device_id      TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    account_id     TEXT NOT NULL,
    message        TEXT NOT NULL DEFAULT '',
    contact_number TEXT NOT NULL DEFAULT '',
    since          INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE lost_mode;
DROP TABLE commands;
