package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
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
	sl, err := db.SyncLog(context.Background())
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

// phoneSink is a controller's side of a relay session: what it received, in order, and
// whether it acknowledges at once.
type phoneSink struct {
	mu    sync.Mutex
	got   []devices.SyncEntry
	hold  bool          // keep acknowledgements back
	held  []int64       // cursors not acknowledged yet
	delay time.Duration // acknowledge this long after receiving
	fails int           // refuse this many sends first, as a broken connection would
	s     *hub.SyncSession
}

func (p *phoneSink) send(cursor int64, payload []byte) error {
	var e devices.SyncEntry
	if err := json.Unmarshal(payload, &e); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fails > 0 {
		p.fails--
		return errors.New("write: connection reset (test)")
	}
	p.got = append(p.got, e)
	if p.hold {
		p.held = append(p.held, cursor)
		return nil
	}
	go func() {
		if p.delay > 0 {
			time.Sleep(p.delay)
		}
		p.s.Delivered(cursor)
	}()
	return nil
}

func (p *phoneSink) release() {
	p.mu.Lock()
	held := p.held
	p.held, p.hold = nil, false
	p.mu.Unlock()
	for _, c := range held {
		p.s.Delivered(c)
	}
}

func (p *phoneSink) entries() []devices.SyncEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]devices.SyncEntry(nil), p.got...)
}

func openSink(t *testing.T, h *hub.Hub, phone devices.Identity, window int, delay time.Duration) *phoneSink {
	t.Helper()
	return startSink(t, h, phone, window, &phoneSink{delay: delay})
}

// startSink opens a relay session to phone that feeds p.
func startSink(t *testing.T, h *hub.Hub, phone devices.Identity, window int, p *phoneSink) *phoneSink {
	t.Helper()
	p.s = h.OpenSync(phone, window, p.send)
	p.s.Start()
	t.Cleanup(p.s.Close)
	return p
}

func waitEntries(t *testing.T, sink *phoneSink, n int) []devices.SyncEntry {
	t.Helper()
	apptest.Eventually(t, 10*time.Second, func() error {
		if got := len(sink.entries()); got < n {
			return fmt.Errorf("phone has %d entries, want %d", got, n)
		}
		return nil
	})
	return sink.entries()
}
