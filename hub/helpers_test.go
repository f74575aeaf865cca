package hub_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/notify"
	"github.com/devicehub/devicehub/store/sqlite"
)

// openDB opens a real SQLite store in the test's temp dir, closed with the test.
func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "devicehub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openSyncLog opens db's sync log, closed with the test.
func openSyncLog(t *testing.T, db *sqlite.DB) *sqlite.SyncLog {
	t.Helper()
	sl, err := db.SyncLog()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sl.Close)
	return sl
}

// baseOptions are a hub's options on db with the outbox notifier and a fake clock that starts
// at 2030-01-01; tests add the features they need.
func baseOptions(db *sqlite.DB) (hub.Options, *clock) {
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	return hub.Options{Store: db, Notifier: notify.New(notify.Options{Store: db, Clock: clk}), Clock: clk}, clk
}
