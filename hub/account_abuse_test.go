package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/store/sqlite"
)

// stack is a hub over a real SQLite file with a fake clock, for tests that need the store too.
type stack struct {
	h   *hub.Hub
	db  *sqlite.DB
	clk *clock
}

func newStack(t *testing.T, opts hub.AccountOptions) stack {
	t.Helper()
	db := openDB(t)
	o, clk := baseOptions(db)
	if opts.ChallengeBase == 0 {
		opts.ChallengeBase = 1000
	}
	o.Accounts = opts
	h := hub.New(o)
	return stack{h: h, db: db, clk: clk}
}

// signUp registers, confirms and logs in id from ip.
func (s stack) signUp(t *testing.T, id, ip string) {
	t.Helper()
	ctx := context.Background()
	req := hub.AccountRequest{Identifier: id, Password: "correct horse battery", IP: ip}
	req.Challenge = solveFrom(t, s.h, ip, id)
	if _, err := s.h.Register(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Code = s.lastCode(t, id)
	if _, err := s.h.ConfirmCode(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Challenge = solveFrom(t, s.h, ip, id)
	if _, _, err := s.h.Login(ctx, req); err != nil {
		t.Fatal(err)
	}
}

// solveFrom issues a challenge for who to a client at ip and solves it.
func solveFrom(t *testing.T, h *hub.Hub, ip, who string) json.RawMessage {
	t.Helper()
	ctx := context.Background()
	c, err := h.IssueChallenge(ctx, ip, who)
	if err != nil {
		t.Fatalf("challenge for %s from %s: %v", who, ip, err)
	}
	a, err := hub.SolveChallenge(ctx, c.(hub.PowChallenge))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(a)
	return raw
}

var codeInBody = regexp.MustCompile(`code is (\d{6})`)

func (s stack) lastCode(t *testing.T, to string) string {
	t.Helper()
	msgs, err := s.db.ListOutbox(context.Background(), to, 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox of %s: %v %v", to, msgs, err)
	}
	m := codeInBody.FindStringSubmatch(msgs[0].Body)
	if m == nil {
		t.Fatalf("no code in %q", msgs[0].Body)
	}
	return m[1]
}

func wrongCodeFor(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// A stranger who hammers the owner's identifier from other addresses (cheap confirm requests
// with no challenge, wrong passwords spread over four IPs, enough for the identifier-wide
// back-off) is limited himself, but the owner logging in from the address they logged in
// from before is neither refused with 429 nor given a harder puzzle. A new address still gets
// the identifier-wide back-off: that is what slows guessing spread over many IPs.
func TestStrangerCannotLockOwnerOut(t *testing.T) {
	ctx := context.Background()
	const owner, home = "olga@example.com", "10.0.0.1"
	s := newStack(t, hub.AccountOptions{ChallengeBase: 100, CodeMinDuration: time.Millisecond})
	s.signUp(t, owner, home)
	h := s.h

	for i := 1; i <= 4; i++ {
		ip := fmt.Sprintf("203.0.113.%d", i)
		for j := 0; j < 5; j++ {
			r := hub.AccountRequest{Identifier: owner, Password: "a wrong guess", IP: ip, Challenge: solveFrom(t, h, ip, owner)}
			if _, _, err := h.Login(ctx, r); hub.ErrorCode(err) != hub.EUnauthorized {
				t.Fatalf("guess %d from %s: %v", j, ip, err)
			}
		}
	}
	stranger := "203.0.113.99"
	var limited error
	for i := 0; i < 30; i++ {
		_, err := h.ConfirmCode(ctx, hub.AccountRequest{Identifier: owner, Code: "123456", IP: stranger})
		if hub.ErrorCode(err) == hub.ERateLimited {
			limited = err
			break
		}
	}
	if limited == nil {
		t.Fatal("30 confirm requests for one identifier from one IP were never rate limited")
	}

	c, err := h.IssueChallenge(ctx, home, owner)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.(hub.PowChallenge).MaxNumber; got != 100 {
		t.Fatalf("owner's puzzle at home has maxnumber %d, want the base 100", got)
	}
	r := hub.AccountRequest{Identifier: owner, Password: "correct horse battery", IP: home, Challenge: solveFrom(t, h, home, owner)}
	if _, _, err := h.Login(ctx, r); err != nil {
		t.Fatalf("owner's login from home after the stranger's requests: %v", err)
	}

	// The stranger is still limited, and an address the account never logged in from waits.
	for _, ip := range []string{"203.0.113.1", "198.51.100.9"} {
		r := hub.AccountRequest{Identifier: owner, Password: "correct horse battery", IP: ip, Challenge: solveFrom(t, h, ip, owner)}
		if _, _, err := h.Login(ctx, r); hub.ErrorCode(err) != hub.ERateLimited {
			t.Fatalf("login from %s during the back-off: %v, want rate_limited", ip, err)
		}
	}
	if _, err := h.ConfirmCode(ctx, hub.AccountRequest{Identifier: owner, Code: "123456", IP: stranger}); hub.ErrorCode(err) != hub.ERateLimited {
		t.Fatalf("stranger's next confirm: %v, want rate_limited", err)
	}
}

// The per-identifier request limit counts each (identifier, IP) pair on its own.
func TestIdentifierLimitIsPerAddress(t *testing.T) {
	ctx := context.Background()
	s := newStack(t, hub.AccountOptions{IdentifierBurst: 3, IdentifierEvery: 10 * time.Second, CodeMinDuration: time.Millisecond})
	confirm := func(id, ip string) error {
		_, err := s.h.ConfirmCode(ctx, hub.AccountRequest{Identifier: id, Code: "123456", IP: ip})
		return err
	}
	for i := 0; i < 3; i++ {
		if err := confirm("pia@example.com", "10.0.0.1"); hub.ErrorCode(err) != hub.EInvalidCode {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	err := confirm("pia@example.com", "10.0.0.1")
	if e := hub.AsError(err); e == nil || e.Code != hub.ERateLimited || e.RetryAfterSeconds != 10 ||
		!strings.Contains(e.Message, "identifier") {
		t.Fatalf("4th request: %v", err)
	}
	if err := confirm("pia@example.com", "10.0.0.2"); hub.ErrorCode(err) != hub.EInvalidCode {
		t.Fatalf("same identifier from another IP: %v", err)
	}
	if err := confirm("quin@example.com", "10.0.0.1"); hub.ErrorCode(err) != hub.EInvalidCode {
		t.Fatalf("another identifier from the same IP: %v", err)
	}
	s.clk.Advance(10 * time.Second)
	if err := confirm("pia@example.com", "10.0.0.1"); hub.ErrorCode(err) != hub.EInvalidCode {
		t.Fatalf("after Retry-After: %v", err)
	}
}

// 20 wrong tries at once on one code: at most 5 are compared and counted, and the right code
// is refused afterwards.
func TestParallelWrongTriesCountedAtomically(t *testing.T) {
	ctx := context.Background()
	s := newStack(t, hub.AccountOptions{IdentifierBurst: 100, CodeMinDuration: time.Millisecond})
	id := "rex@example.com"
	req := hub.AccountRequest{Identifier: id, Password: "correct horse battery", IP: "10.0.0.1"}
	req.Challenge = solveFrom(t, s.h, req.IP, id)
	if _, err := s.h.Register(ctx, req); err != nil {
		t.Fatal(err)
	}
	code := s.lastCode(t, id)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		compared int
	)
	start := make(chan struct{})
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.h.ConfirmCode(ctx, hub.AccountRequest{Identifier: id, Code: wrongCodeFor(code), IP: "10.0.0.1"})
			e := hub.AsError(err)
			if e == nil || e.Code != hub.EInvalidCode {
				t.Errorf("wrong try: %v", err)
				return
			}
			if !strings.HasPrefix(e.Message, "too many wrong tries") {
				mu.Lock()
				compared++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if compared != 5 {
		t.Errorf("%d of 20 parallel wrong tries were answered as compared, want 5", compared)
	}
	acc, err := s.db.AccountByIdentifier(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.db.LatestVerification(ctx, acc.ID, hub.PurposeConfirm)
	if err != nil {
		t.Fatal(err)
	}
	if v.Attempts > 5 {
		t.Errorf("%d tries counted, want at most 5", v.Attempts)
	}
	if _, err := s.h.ConfirmCode(ctx, hub.AccountRequest{Identifier: id, Code: code, IP: "10.0.0.1"}); hub.ErrorCode(err) != hub.EInvalidCode {
		t.Fatalf("right code after the parallel tries: %v", err)
	}
}
