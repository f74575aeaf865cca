-- +goose Up
-- Broker session state (clients, subscriptions, in-flight and retained messages) as mochi's
-- storage records, keyed like mochi's own storage hooks do.
CREATE TABLE broker_state (
    key   TEXT PRIMARY KEY,
    kind  TEXT NOT NULL,
    value BLOB NOT NULL
) STRICT;
CREATE INDEX broker_state_kind ON broker_state(kind);

-- +goose Down
DROP TABLE broker_state;
