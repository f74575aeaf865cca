package hub_test

import (
	"context"
	"encoding/json"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

const cmdPassword = "correct horse battery"

// recorder is a transport that keeps what the hub publishes.
type recorder struct {
	mu   sync.Mutex
	sent []devices.Command
}

func (r *recorder) Publish(_ context.Context, _ string, payload []byte, _ byte) error {
	var c devices.Command
	if err := json.Unmarshal(payload, &c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, c)
	return nil
}

func (r *recorder) Drop(string) {}

func (r *recorder) take() []devices.Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent
	r.sent = nil
	return out
}

// commandHub is a hub with commands on a real SQLite file, a fake clock and a recording
// transport, with one confirmed account that has one registered phone.
func commandHub(t *testing.T) (*hub.Hub, *clock, *recorder, string, devices.Identity) {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	o, clk := baseOptions(db)
	o.Accounts, o.Commands = hub.AccountOptions{ChallengeBase: 1000}, db
	h := hub.New(o)
	rec := &recorder{}
	h.AttachTransport(rec, rec)
	req := hub.AccountRequest{Identifier: "lou@example.com", Password: cmdPassword, IP: "10.0.0.1", Challenge: solveFor(t, h, "lou@example.com")}
	if _, err := h.Register(ctx, req); err != nil {
		t.Fatal(err)
	}
	msgs, err := db.ListOutbox(ctx, "lou@example.com", 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox: %v %v", msgs, err)
	}
	req.Code = regexp.MustCompile(`code is (\d{6})`).FindStringSubmatch(msgs[0].Body)[1]
	if _, err := h.ConfirmCode(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Challenge = solveFor(t, h, "lou@example.com")
	_, s, err := h.Login(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := h.RegisterController(ctx, s.AccountID, devices.Phone, "Lou's phone", "imei-lou")
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.AuthenticateDevice(ctx, creds.DeviceID, creds.Secret, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	return h, clk, rec, s.AccountID, id
}

func lockReq() hub.CommandRequest {
	return hub.CommandRequest{Type: devices.CmdLock, Message: "lost", ContactNumber: "+14155552671"}
}

func TestCommandsResentInOrderUntilAcknowledged(t *testing.T) {
	h, clk, rec, acc, phone := commandHub(t)
	ctx := context.Background()
	lock, err := h.IssueCommand(ctx, acc, phone.DeviceID, lockReq(), "http")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Millisecond)
	ring, err := h.IssueCommand(ctx, acc, phone.DeviceID, hub.CommandRequest{Type: devices.CmdRing}, "http")
	if err != nil {
		t.Fatal(err)
	}
	// The phone never connected: both stay queued, and nothing is published until it does.
	if lock.State != hub.CommandQueued || ring.State != hub.CommandQueued || len(rec.take()) != 0 {
		t.Fatalf("states %s %s", lock.State, ring.State)
	}
	h.DeviceOnline(ctx, phone.DeviceID, true)
	h.DeviceConnected(ctx, phone.DeviceID)
	sent := rec.take()
	if len(sent) != 2 || sent[0].ID != lock.ID || sent[1].ID != ring.ID {
		t.Fatalf("resent %+v, want lock then ring", sent)
	}
	var la devices.LockArgs
	if err := json.Unmarshal(sent[0].Args, &la); err != nil || la.ContactNumber != "+14155552671" || la.ReportIntervalS != 300 {
		t.Fatalf("lock args %s: %v", sent[0].Args, err)
	}
	if c, _ := h.CommandStatus(ctx, acc, phone.DeviceID, lock.ID); c.State != hub.CommandDelivered || c.DeliveredAt == nil {
		t.Fatalf("after connect: %+v", c)
	}
	if err := h.AckCommand(ctx, phone, devices.CommandAckArgs{CommandID: lock.ID, Status: devices.AckAcknowledged}); err != nil {
		t.Fatal(err)
	}
	if err := h.AckCommand(ctx, phone, devices.CommandAckArgs{CommandID: "cmd_unknown", Status: devices.AckAcknowledged}); err != nil {
		t.Fatalf("ack of an unknown command: %v", err)
	}
	h.DeviceConnected(ctx, phone.DeviceID)
	if sent := rec.take(); len(sent) != 1 || sent[0].ID != ring.ID {
		t.Fatalf("resent %+v, want only the ring", sent)
	}
	if err := h.AckCommand(ctx, phone, devices.CommandAckArgs{CommandID: ring.ID, Status: devices.AckFailed, Detail: "muted"}); err != nil {
		t.Fatal(err)
	}
	list, err := h.Commands(ctx, acc, phone.DeviceID, 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("list %+v %v", list, err)
	}
	if list[0].ID != ring.ID || list[0].State != hub.CommandFailed || list[0].Detail != "muted" || list[1].State != hub.CommandAcknowledged {
		t.Fatalf("list %+v", list)
	}
}

func TestCommandsExpire(t *testing.T) {
	h, clk, rec, acc, phone := commandHub(t)
	ctx := context.Background()
	ring, err := h.IssueCommand(ctx, acc, phone.DeviceID, hub.CommandRequest{Type: devices.CmdRing}, "http")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := h.IssueCommand(ctx, acc, phone.DeviceID, lockReq(), "http")
	if err != nil {
		t.Fatal(err)
	}
	rec.take()
	clk.Advance(24*time.Hour + time.Second)
	// Read before any expiry pass: already shown expired.
	if c, _ := h.CommandStatus(ctx, acc, phone.DeviceID, ring.ID); c.State != hub.CommandExpired {
		t.Fatalf("ring after 24h: %s", c.State)
	}
	if n, err := h.ExpireCommands(ctx); err != nil || n != 1 {
		t.Fatalf("expired %d, %v", n, err)
	}
	// A lock waits for a stolen phone much longer; the expired ring is not sent again.
	h.DeviceConnected(ctx, phone.DeviceID)
	if sent := rec.take(); len(sent) != 1 || sent[0].ID != lock.ID {
		t.Fatalf("resent %+v, want only the lock", sent)
	}
	// A late acknowledgement of the expired ring is still recorded.
	if err := h.AckCommand(ctx, phone, devices.CommandAckArgs{CommandID: ring.ID, Status: devices.AckAcknowledged}); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.CommandStatus(ctx, acc, phone.DeviceID, ring.ID); c.State != hub.CommandAcknowledged {
		t.Fatalf("late ack: %s", c.State)
	}
	clk.Advance(30 * 24 * time.Hour)
	h.DeviceConnected(ctx, phone.DeviceID)
	if sent := rec.take(); len(sent) != 0 {
		t.Fatalf("resent %+v after the lock expired", sent)
	}
	if c, _ := h.CommandStatus(ctx, acc, phone.DeviceID, lock.ID); c.State != hub.CommandExpired {
		t.Fatalf("lock after 30 days: %s", c.State)
	}
}

func TestUnlockWithPasswordThrottledThenWorks(t *testing.T) {
	h, clk, rec, acc, phone := commandHub(t)
	ctx := context.Background()
	if _, err := h.IssueCommand(ctx, acc, phone.DeviceID, lockReq(), "http"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := h.UnlockWithPassword(ctx, phone, "guess"); hub.ErrorCode(err) != hub.EUnauthorized {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if err := h.UnlockWithPassword(ctx, phone, cmdPassword); hub.ErrorCode(err) != hub.ERateLimited {
		t.Fatalf("right password while throttled: %v", err)
	}
	if lm, _ := h.LostModeOf(ctx, acc, phone.DeviceID); lm == nil {
		t.Fatal("lost mode ended while throttled")
	}
	rec.take()
	clk.Advance(30 * time.Second)
	if err := h.UnlockWithPassword(ctx, phone, cmdPassword); err != nil {
		t.Fatalf("right password after the wait: %v", err)
	}
	if lm, _ := h.LostModeOf(ctx, acc, phone.DeviceID); lm != nil {
		t.Fatalf("still in lost mode: %+v", lm)
	}
	if sent := rec.take(); len(sent) != 1 || sent[0].Type != devices.CmdUnlock {
		t.Fatalf("sent %+v, want an unlock command", sent)
	}
}

func TestLostModeRefusesUnbind(t *testing.T) {
	h, _, rec, acc, phone := commandHub(t)
	ctx := context.Background()
	if _, err := h.IssueCommand(ctx, acc, phone.DeviceID, lockReq(), "http"); err != nil {
		t.Fatal(err)
	}
	for _, actor := range []string{"http", phone.DeviceID} {
		if err := h.Unbind(ctx, acc, phone.DeviceID, cmdPassword, actor); hub.ErrorCode(err) != hub.EForbidden {
			t.Fatalf("unbind by %s in lost mode: %v", actor, err)
		}
	}
	if _, err := h.IssueCommand(ctx, acc, phone.DeviceID, hub.CommandRequest{Type: devices.CmdUnlock}, "http"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.IssueCommand(ctx, acc, phone.DeviceID, hub.CommandRequest{Type: devices.CmdRing}, "http"); err != nil {
		t.Fatal(err)
	}
	if err := h.Unbind(ctx, acc, phone.DeviceID, cmdPassword, "http"); err != nil {
		t.Fatalf("unbind after unlock: %v", err)
	}
	// The old owner's open commands (unlock, ring) end with the binding: nothing is sent
	// to the device when it connects again.
	rec.take()
	h.DeviceConnected(ctx, phone.DeviceID)
	if sent := rec.take(); len(sent) != 0 {
		t.Fatalf("sent %+v to an unbound device", sent)
	}
}

func TestIssueCommandValidation(t *testing.T) {
	h, _, _, acc, phone := commandHub(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		req   hub.CommandRequest
		field string
	}{
		{"unknown type", hub.CommandRequest{Type: "explode"}, "type"},
		{"event type", hub.CommandRequest{Type: devices.CmdBound}, "type"},
		{"lock without number", hub.CommandRequest{Type: devices.CmdLock}, "contact_number"},
		{"lock with a local number", hub.CommandRequest{Type: devices.CmdLock, ContactNumber: "555-1234"}, "contact_number"},
		{"long message", hub.CommandRequest{Type: devices.CmdLock, ContactNumber: "+14155552671", Message: string(make([]byte, 300))}, "message"},
		{"control characters", hub.CommandRequest{Type: devices.CmdLock, ContactNumber: "+14155552671", Message: "a\x07b"}, "message"},
		{"message on ring", hub.CommandRequest{Type: devices.CmdRing, Message: "hi"}, "message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.IssueCommand(ctx, acc, phone.DeviceID, tc.req, "http")
			if e := hub.AsError(err); e == nil || e.Code != hub.EInvalid || e.Field != tc.field {
				t.Fatalf("%v, want invalid %s", err, tc.field)
			}
		})
	}
	if _, err := h.IssueCommand(ctx, "acc_other", phone.DeviceID, hub.CommandRequest{Type: devices.CmdRing}, "http"); hub.ErrorCode(err) != hub.ENotFound {
		t.Fatalf("another account: %v", err)
	}
	if _, err := h.CommandStatus(ctx, acc, phone.DeviceID, "cmd_nope"); hub.ErrorCode(err) != hub.ENotFound {
		t.Fatalf("unknown command: %v", err)
	}
}
