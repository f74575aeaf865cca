-- +goose Up
-- The duplicate check of samples moves out of the sync log's UNIQUE key into the store's
-- memory (seen.go), saved here in bulk. The key (account, device, binding, stream, seq) put
-- one B-tree leaf per device into every group commit, about half of a commit's pages, and
-- its scattered pages were what the checkpoints spent their time flushing
-- (README, Performance). The log itself keeps only indexes that grow at one end.
--
-- sync_seen holds, per stream of a binding, the runs of seqs stored (seen.go encodes them);
-- sync_seen_mark says through which log cursor the rows are complete: at open the store
-- adds what the log holds after it. With no mark (this migration) the whole log is read once.
CREATE TABLE sync_seen (
    account_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    binding    INTEGER NOT NULL,
    stream     TEXT NOT NULL,
    runs       BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id, binding, stream)
) STRICT, WITHOUT ROWID;
CREATE TABLE sync_seen_mark (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL
) STRICT;

-- binding_changes counts every change of a device's account or binding, whatever the code
-- path: the sync committer keeps the devices' bindings in memory and reads this once per
-- transaction instead of each device's row once per sample.
CREATE TABLE binding_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
) STRICT;
INSERT INTO binding_changes(id, n) VALUES(1, 0);
-- +goose StatementBegin
CREATE TRIGGER devices_binding_insert AFTER INSERT ON devices BEGIN
    UPDATE binding_changes SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER devices_binding_update AFTER UPDATE OF account_id, bound_at ON devices BEGIN
    UPDATE binding_changes SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER devices_binding_delete AFTER DELETE ON devices BEGIN
    UPDATE binding_changes SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd

-- SQLite cannot drop a UNIQUE constraint in place, so the table is rebuilt; the
-- AUTOINCREMENT high-water mark is carried over, so no cursor is ever reused.
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
    created_at INTEGER NOT NULL
) STRICT;
INSERT INTO sync_log_new(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at)
    SELECT cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at FROM sync_log;
INSERT INTO sqlite_sequence(name, seq)
    SELECT 'sync_log_new', seq FROM sqlite_sequence WHERE name = 'sync_log'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sync_log_new');
UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sync_log'), 0))
    WHERE name = 'sync_log_new';
DROP TABLE sync_log;
ALTER TABLE sync_log_new RENAME TO sync_log;
CREATE INDEX sync_log_account ON sync_log(account_id, cursor);
-- The newest fix of a phone (lost mode, locate) without the unique key: only location
-- samples are in it, and phones send those far less often than bands send samples.
CREATE INDEX sync_log_location ON sync_log(account_id, device_id, binding, seq) WHERE stream = 'location';

-- +goose Down
CREATE TABLE sync_log_old (
    cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    binding    INTEGER NOT NULL,
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    wide       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (account_id, device_id, binding, stream, seq)
) STRICT;
INSERT OR IGNORE INTO sync_log_old(cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at)
    SELECT cursor, account_id, device_id, binding, stream, seq, ts, wide, data, created_at FROM sync_log ORDER BY cursor;
INSERT INTO sqlite_sequence(name, seq)
    SELECT 'sync_log_old', seq FROM sqlite_sequence WHERE name = 'sync_log'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sync_log_old');
UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sync_log'), 0))
    WHERE name = 'sync_log_old';
DROP TABLE sync_log;
ALTER TABLE sync_log_old RENAME TO sync_log;
CREATE INDEX sync_log_account ON sync_log(account_id, cursor);
DROP TRIGGER devices_binding_delete;
DROP TRIGGER devices_binding_update;
DROP TRIGGER devices_binding_insert;
DROP TABLE binding_changes;
DROP TABLE sync_seen_mark;
DROP TABLE sync_seen;
