package hub_test

import (
	"context"
	"encoding/json"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// account signs up id on a hub over a real SQLite file and returns the hub, the clock, the
// account ID and a session token.
func account(t *testing.T, id string) (*hub.Hub, *clock, string, string) {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	o, clk := baseOptions(db)
	o.Accounts = hub.AccountOptions{ChallengeBase: 1000}
	h := hub.New(o)
	req := hub.AccountRequest{Identifier: id, Password: "correct horse battery", IP: "10.0.0.1"}
	req.Challenge = solveFor(t, h, id)
	if _, err := h.Register(ctx, req); err != nil {
		t.Fatal(err)
	}
	msgs, err := db.ListOutbox(ctx, id, 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox: %v %v", msgs, err)
	}
	req.Code = regexp.MustCompile(`code is (\d{6})`).FindStringSubmatch(msgs[0].Body)[1]
	if _, err := h.ConfirmCode(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Challenge = solveFor(t, h, id)
	token, s, err := h.Login(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return h, clk, s.AccountID, token
}

func TestVerifyPasswordIsThrottled(t *testing.T) {
	ctx := context.Background()
	h, clk, accountID, _ := account(t, "kim@example.com")
	if err := h.VerifyPassword(ctx, accountID, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := h.VerifyPassword(ctx, accountID, "wrong"); hub.ErrorCode(err) != hub.EUnauthorized {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	err := h.VerifyPassword(ctx, accountID, "correct horse battery")
	if e := hub.AsError(err); e == nil || e.Code != hub.ERateLimited || e.RetryAfterSeconds != 30 {
		t.Fatalf("after 5 failures: %v", err)
	}
	clk.Advance(30 * time.Second)
	if err := h.VerifyPassword(ctx, accountID, "correct horse battery"); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
}

func TestAuthenticateExpiryAndRevocation(t *testing.T) {
	ctx := context.Background()
	h, clk, accountID, token := account(t, "+14155552671")
	p, err := h.Authenticate(ctx, token)
	if err != nil || p.AccountID != accountID || !hub.ValidID("ses", p.SessionID) {
		t.Fatalf("authenticate: %+v %v", p, err)
	}
	clk.Advance(30*24*time.Hour + time.Second)
	if _, err := h.Authenticate(ctx, token); hub.ErrorCode(err) != hub.EUnauthorized {
		t.Fatalf("expired token: %v", err)
	}
	clk.Advance(-time.Hour)
	if err := h.RevokeSession(ctx, accountID, p.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Authenticate(ctx, token); hub.ErrorCode(err) != hub.EUnauthorized {
		t.Fatalf("revoked token: %v", err)
	}
}

// solveFor issues a challenge for who from 10.0.0.1 and solves it, as a client would.
func solveFor(t *testing.T, h *hub.Hub, who string) json.RawMessage {
	t.Helper()
	ctx := context.Background()
	c, err := h.IssueChallenge(ctx, "10.0.0.1", who)
	if err != nil {
		t.Fatal(err)
	}
	a, err := hub.SolveChallenge(ctx, c.(hub.PowChallenge))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(a)
	return raw
}

// Fields are trimmed before they are counted and before the one that is set is chosen: a
// blank email beside a phone is no email.
func TestParseIdentifierIgnoresBlankFields(t *testing.T) {
	for _, tc := range []struct{ email, phone, identifier, want string }{
		{"   ", "+14155552671", "", "+14155552671"},
		{"", "\t", "ann@example.com", "ann@example.com"},
		{"ann@Example.COM", " ", "", "ann@example.com"},
		{" ", "", " +14155552671 ", "+14155552671"},
	} {
		id, err := hub.ParseIdentifier(tc.email, tc.phone, tc.identifier)
		if err != nil || id.Value != tc.want {
			t.Errorf("ParseIdentifier(%q, %q, %q) = %+v, %v; want %s", tc.email, tc.phone, tc.identifier, id, err, tc.want)
		}
	}
	if _, err := hub.ParseIdentifier(" ", " ", ""); hub.AsError(err) == nil || hub.AsError(err).Field != "identifier" {
		t.Errorf("all blank: %v, want an error naming identifier", err)
	}
}
