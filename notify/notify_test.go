package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/notify"
	"github.com/devicehub/devicehub/store/sqlite"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "devicehub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func only(t *testing.T, db *sqlite.DB) hub.Message {
	t.Helper()
	msgs, err := db.ListOutbox(context.Background(), "", 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox: %v %+v", err, msgs)
	}
	return msgs[0]
}

// A gateway that fails, then works: the message is retried after the back-off and recorded.
func TestWebhookRetriesAfterFailure(t *testing.T) {
	var calls atomic.Int32
	var got map[string]string
	var idem string
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "gateway down", http.StatusBadGateway)
			return
		}
		idem = r.Header.Get("Idempotency-Key")
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer gw.Close()

	ctx := context.Background()
	db := openDB(t)
	clk := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	ob := notify.New(notify.Options{Store: db, Sender: notify.Webhook{URL: gw.URL}, Clock: clk, RetryBase: 2 * time.Second})
	msg := hub.Message{ID: hub.NewID("msg"), Channel: hub.ChannelSMS, To: "+14155552671", Subject: "s", Body: "Your devicehub code is 123456", CreatedAt: clk.Now()}
	if err := ob.Notify(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if n, err := ob.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("first attempt: sent %d, %v", n, err)
	}
	m := only(t, db)
	if m.Status != hub.MessagePending || m.Attempts != 1 || m.LastError == "" || !m.NextAttemptAt.Equal(clk.Now().Add(2*time.Second)) {
		t.Fatalf("after the failure: %+v", m)
	}
	// Not due yet.
	if n, _ := ob.RunOnce(ctx); n != 0 || calls.Load() != 1 {
		t.Fatalf("retried before the back-off: %d calls", calls.Load())
	}
	clk.Advance(2 * time.Second)
	if n, err := ob.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("retry: sent %d, %v", n, err)
	}
	m = only(t, db)
	if m.Status != hub.MessageSent || m.Attempts != 2 || m.SentAt.IsZero() || m.LastError != "" {
		t.Fatalf("after the retry: %+v", m)
	}
	if got["to"] != "+14155552671" || got["channel"] != "sms" || got["body"] != msg.Body || idem != msg.ID {
		t.Fatalf("gateway got %v, Idempotency-Key %q", got, idem)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer gw.Close()
	ctx := context.Background()
	db := openDB(t)
	clk := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	ob := notify.New(notify.Options{Store: db, Sender: notify.Webhook{URL: gw.URL}, Clock: clk, MaxAttempts: 3})
	if err := ob.Notify(ctx, hub.Message{ID: hub.NewID("msg"), Channel: hub.ChannelEmail, To: "a@example.com", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := ob.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
	}
	if m := only(t, db); m.Status != hub.MessageFailed || m.Attempts != 3 {
		t.Fatalf("after 3 failures: %+v", m)
	}
}

// The outbox driver keeps messages, held, and never sends them.
func TestOutboxDriverHolds(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	ob := notify.New(notify.Options{Store: db})
	ob.Start()
	defer ob.Stop()
	if err := ob.Notify(ctx, hub.Message{ID: hub.NewID("msg"), Channel: hub.ChannelEmail, To: "a@example.com", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	if m := only(t, db); m.Status != hub.MessageHeld || m.Attempts != 0 {
		t.Fatalf("held message: %+v", m)
	}
}
