package app_test

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/app/apptest"
)

// TestOldInflightSecretsDeletedAtStart: versions before the hub stopped persisting its own
// messages to devices left in-flight rows of them in the database, a "bound" command with
// the device's binding secret among them. Starting this version deletes those rows (they
// are never restored or resent: the hub's store sends again what still matters) and keeps
// the in-flight messages of other topics, which it still persists.
func TestOldInflightSecretsDeletedAtStart(t *testing.T) {
	dir, db := stoppedHubDB(t)
	const secret = "old-binding-secret-at-rest"
	rows := map[string]string{ // key → topic
		"IFM_dev_old:7": "devices/dev_old/commands",
		"IFM_dev_old:8": "accounts/acc_old/events",
		"IFM_anon1:3":   "experiments/a",
	}
	for key, topic := range rows {
		m := storage.Message{ID: key, T: storage.InflightKey, Client: strings.Split(strings.TrimPrefix(key, "IFM_"), ":")[0],
			TopicName: topic, Payload: []byte(`{"type":"bound","args":{"secret":"` + secret + `"}}`),
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7}
		v, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO broker_state(key, kind, value) VALUES(?, ?, ?)`, key, storage.InflightKey, v); err != nil {
			t.Fatalf("write an old in-flight row: %v", err)
		}
	}

	apptest.StartIn(t, dir, nil)
	left := map[string]bool{}
	q, err := db.Query(`SELECT key FROM broker_state WHERE kind = ?`, storage.InflightKey)
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var k string
		if err := q.Scan(&k); err != nil {
			t.Fatal(err)
		}
		left[k] = true
	}
	q.Close()
	if left["IFM_dev_old:7"] || left["IFM_dev_old:8"] {
		t.Fatalf("in-flight rows of the hub's topics still stored after start: %v", left)
	}
	if !left["IFM_anon1:3"] {
		t.Fatalf("the in-flight row of another topic was deleted too: %v", left)
	}
}

// TestUnreadableRetainedRowDeletedAtStart: without broker.allow_anonymous no retained message
// is restored and whatever is stored is deleted at start, even a row this version cannot
// decode (written by another version): it is deleted, not a reason to refuse to start.
func TestUnreadableRetainedRowDeletedAtStart(t *testing.T) {
	dir, db := stoppedHubDB(t)
	if _, err := db.Exec(`INSERT INTO broker_state(key, kind, value) VALUES(?, ?, X'00FF')`, storage.RetainedKey+"_status/lamp", storage.RetainedKey); err != nil {
		t.Fatal(err)
	}
	apptest.StartIn(t, dir, nil) // fails the test if the hub does not start
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM broker_state WHERE kind = ?`, storage.RetainedKey).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d retained rows still stored after start", n)
	}
}

// stoppedHubDB makes a hub database in a fresh folder (a hub started once and stopped) and
// opens it directly, to write what an older version might have left before the next start.
func stoppedHubDB(t *testing.T) (dir string, db *sql.DB) {
	t.Helper()
	dir = t.TempDir()
	h := apptest.StartIn(t, dir, nil)
	h.Stop(t)
	db, err := sql.Open("sqlite3", "file:"+h.Config.Store.Path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dir, db
}
