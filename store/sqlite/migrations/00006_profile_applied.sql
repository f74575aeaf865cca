-- +goose Up
-- Which version of its account's profile (the settings document owner = account ID,
-- name = 'profile') each device applied, as the device reported with settings_report
-- {"doc": "profile"}. A device whose version is behind gets the profile when it next
-- subscribes, and the owner sees who is behind.
--
-- A row belongs to the binding it was written in (account_id and bound_at as the device had
-- them): reads ignore rows of an earlier binding, so a device bound again, to another account
-- or to the same one after an unbind, starts from "never applied" and is sent the profile,
-- without unbinding having to clean this table.
CREATE TABLE profile_applied (
    device_id  TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    bound_at   INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE profile_applied;
