-- +goose Up
-- A sample's duplicate key includes the binding it was sent in (the device's bound_at at
-- commit time). Before, a band that was unbound and bound again (to a new owner, or to the
-- same one) and restarted its seq at 1 had every new sample acknowledged but dropped as a
-- "duplicate" of the old binding's, until its seq passed the old values. SQLite cannot change
-- a UNIQUE constraint in place, so the table is rebuilt; the AUTOINCREMENT high-water mark
-- is carried over, so no cursor is ever reused, even if retention had emptied the table.
CREATE TABLE sync_log_new (
    cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    binding    INTEGER NOT NULL, -- the device's bound_at when the sample was committed
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    wide       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (account_id, device_id, binding, stream, seq)
) STRICT;
INSERT INTO sync_log_new(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at)
    SELECT l.cursor, l.account_id, l.device_id, COALESCE(d.bound_at, 0), l.stream, l.seq, l.ts, l.wide, l.data, l.created_at
    FROM sync_log l LEFT JOIN devices d ON d.id = l.device_id AND d.account_id = l.account_id;
INSERT INTO sqlite_sequence(name, seq)
    SELECT 'sync_log_new', seq FROM sqlite_sequence WHERE name = 'sync_log'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sync_log_new');
UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sync_log'), 0))
    WHERE name = 'sync_log_new';
DROP TABLE sync_log;
ALTER TABLE sync_log_new RENAME TO sync_log;
CREATE INDEX sync_log_account ON sync_log(account_id, cursor);

-- +goose Down
CREATE TABLE sync_log_old (
    cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    wide       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (account_id, device_id, stream, seq)
) STRICT;
INSERT OR IGNORE INTO sync_log_old(cursor, account_id, device_id, stream, seq, ts, wide, data, created_at)
    SELECT cursor, account_id, device_id, stream, seq, ts, wide, data, created_at FROM sync_log ORDER BY cursor;
INSERT INTO sqlite_sequence(name, seq)
    SELECT 'sync_log_old', seq FROM sqlite_sequence WHERE name = 'sync_log'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sync_log_old');
DROP TABLE sync_log;
ALTER TABLE sync_log_old RENAME TO sync_log;
CREATE INDEX sync_log_account ON sync_log(account_id, cursor);
