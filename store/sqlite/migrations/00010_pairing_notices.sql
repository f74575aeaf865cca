-- +goose Up
-- What a device must still be told about its pairings: "paired" (with the link key) or
-- "unpaired", one row per device and peer, the newest news replacing older (an unpair
-- replaces a pending "paired", and its link key with it). A notice is sent when it is made
-- and again each time the device subscribes to its commands topic, until the device
-- acknowledges its id with command_ack; then the row, and the link key, are deleted. So a
-- phone that was offline when its band paired still gets the key, and nothing keeps a link
-- key longer than it takes both sides to have it.
CREATE TABLE pairing_notices (
    id         TEXT PRIMARY KEY, -- the command id the device acknowledges
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    peer_id    TEXT NOT NULL,
    type       TEXT NOT NULL CHECK (type IN ('paired', 'unpaired')),
    link_key   BLOB,
    created_at INTEGER NOT NULL,
    UNIQUE (device_id, peer_id)
) STRICT;

-- +goose Down
DROP TABLE pairing_notices;
