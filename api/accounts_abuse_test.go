package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// lowWork keeps the puzzles cheap for tests that solve many.
var lowWork = hub.AccountOptions{ChallengeBase: 2000, ForgotMinDuration: time.Millisecond}

func TestExpiredCode(t *testing.T) {
	c, clk := startStack(t, lowWork)
	id := "fay@example.com"
	c.want(c.register(id, testPassword), http.StatusAccepted)
	code := c.lastCode(id)
	clk.Advance(10*time.Minute + time.Second)
	r := c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": id, "code": code})
	if r.status != http.StatusBadRequest || r.errCode() != "invalid_code" || r.errField() != "code" {
		t.Fatalf("expired code: %d %s", r.status, r.raw)
	}
	token := tokenRE.FindStringSubmatch(c.outbox(id)[0].Body)[1]
	if r := c.do("GET", "/api/v1/accounts/confirm?token="+token, "", nil); r.errCode() != "invalid_code" {
		t.Fatalf("expired link: %d %s", r.status, r.raw)
	}
	// A resent code works.
	c.want(c.do("POST", "/api/v1/accounts/resend", "", map[string]string{"identifier": id}), http.StatusAccepted)
	fresh := c.lastCode(id)
	c.want(c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": id, "code": fresh}), http.StatusOK)
}

func TestSixthTryFailsEvenWithTheRightCode(t *testing.T) {
	c, _ := startStack(t, lowWork)
	id := "+442079460958"
	c.want(c.register(id, testPassword), http.StatusAccepted)
	code := c.lastCode(id)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := 1; i <= 5; i++ {
		r := c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": id, "code": wrong})
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_code" {
			t.Fatalf("wrong try %d: %d %s", i, r.status, r.raw)
		}
	}
	r := c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": id, "code": code})
	if r.status != http.StatusBadRequest || r.errCode() != "invalid_code" {
		t.Fatalf("6th try with the right code: %d %s", r.status, r.raw)
	}
}

func TestResendIsRateLimited(t *testing.T) {
	c, clk := startStack(t, lowWork)
	id := "gus@example.com"
	c.want(c.register(id, testPassword), http.StatusAccepted) // 1 of 3 messages
	c.want(c.do("POST", "/api/v1/accounts/resend", "", map[string]string{"identifier": id}), http.StatusAccepted)
	c.want(c.do("POST", "/api/v1/accounts/resend", "", map[string]string{"identifier": id}), http.StatusAccepted)
	r := c.do("POST", "/api/v1/accounts/resend", "", map[string]string{"identifier": id})
	if r.status != http.StatusTooManyRequests || r.errCode() != "rate_limited" {
		t.Fatalf("4th message: %d %s", r.status, r.raw)
	}
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 60 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if n := len(c.outbox(id)); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	clk.Advance(time.Duration(secs) * time.Second)
	c.want(c.do("POST", "/api/v1/accounts/resend", "", map[string]string{"identifier": id}), http.StatusAccepted)
}

func TestPerIPRateLimit(t *testing.T) {
	c, clk := startStack(t, hub.AccountOptions{IPBurst: 10, IPEvery: 5 * time.Second})
	for i := 0; i < 10; i++ {
		c.want(c.do("POST", "/api/v1/challenges", "", nil), http.StatusCreated)
	}
	r := c.do("POST", "/api/v1/challenges", "", nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "5" {
		t.Fatalf("11th request: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.raw)
	}
	clk.Advance(5 * time.Second)
	c.want(c.do("POST", "/api/v1/challenges", "", nil), http.StatusCreated)
}

func TestLoginBackoff(t *testing.T) {
	c, clk := startStack(t, lowWork)
	id := "hal@example.com"
	c.signUp(id)
	wrongLogin := func() resp { return c.login(id, "not the password") }
	for i := 0; i < 5; i++ {
		if r := wrongLogin(); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong login %d: %d %s", i, r.status, r.raw)
		}
	}
	// Locked, even with the right password: a guesser learns nothing while it lasts.
	r := c.login(id, testPassword)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "30" {
		t.Fatalf("after 5 failures: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	// Each further failure doubles the wait, up to 15 minutes: a back-off, never a hard lock.
	want := []string{"60", "120", "240", "480", "900", "900"}
	for i, w := range want {
		clk.Advance(15 * time.Minute)
		if r := wrongLogin(); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d after waiting: %d %s", 6+i, r.status, r.raw)
		}
		r := wrongLogin()
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != w {
			t.Fatalf("after failure %d: %d Retry-After %q, want %s", 6+i, r.status, r.header.Get("Retry-After"), w)
		}
	}
	clk.Advance(15 * time.Minute)
	c.want(c.login(id, testPassword), http.StatusCreated)
	// Success clears the count.
	if r := wrongLogin(); r.status != http.StatusUnauthorized {
		t.Fatalf("after success: %d", r.status)
	}
}

func TestChallengeDifficultyRisesWithFailures(t *testing.T) {
	c, _ := startStack(t, lowWork)
	id := "ivy@example.com"
	c.signUp(id)
	maxNumber := func() int64 {
		r := c.want(c.do("POST", "/api/v1/challenges", "", map[string]string{"identifier": id}), http.StatusCreated)
		var ch hub.PowChallenge
		_ = json.Unmarshal(r.raw, &ch)
		return ch.MaxNumber
	}
	before := maxNumber()
	easy := c.challenge("") // issued before the failures, for nobody in particular
	for i := 0; i < 4; i++ {
		c.want(c.login(id, "not the password"), http.StatusUnauthorized)
	}
	if after := maxNumber(); after < 4*before {
		t.Fatalf("maxnumber %d after failures, %d before", after, before)
	}
	r := c.do("POST", "/api/v1/sessions", "", map[string]any{"identifier": id, "password": testPassword, "challenge": easy})
	if r.status != http.StatusForbidden || r.errCode() != "challenge_failed" {
		t.Fatalf("old easy challenge: %d %s", r.status, r.raw)
	}
	c.want(c.login(id, testPassword), http.StatusCreated)
}

// Registering a taken identifier answers exactly like a new one, in about the same time, and
// the owner gets a notice instead of a code. Login and forgot-password do not tell either.
func TestNoEnumeration(t *testing.T) {
	c, clk := startStack(t, hub.AccountOptions{ChallengeBase: 2000, IPBurst: 1000, IdentifierBurst: 1000, SendBurst: 1000})
	taken := "jo@example.com"
	c.signUp(taken)

	a := c.want(c.register(taken, "another password 1"), http.StatusAccepted)
	b := c.want(c.register("nobody@example.com", "another password 1"), http.StatusAccepted)
	if a.str("status") != b.str("status") || a.str("kind") != b.str("kind") || len(a.body) != len(b.body) {
		t.Fatalf("register answers differ:\n%s\n%s", a.raw, b.raw)
	}
	notice := c.outbox(taken)[0]
	if codeRE.MatchString(notice.Body) || notice.Subject != "Someone tried to register with your address" {
		t.Fatalf("owner's message: %+v", notice)
	}
	c.want(c.login(taken, testPassword), http.StatusCreated) // the password did not change

	l1 := c.login(taken, "wrong password 1")
	l2 := c.login("nobody2@example.com", "wrong password 1")
	if l1.status != l2.status || string(l1.raw) != string(l2.raw) {
		t.Fatalf("login answers differ:\n%s\n%s", l1.raw, l2.raw)
	}

	// Timing: medians of interleaved runs, compared to each other (no absolute limits).
	const n = 5
	var known, unknown []time.Duration
	for i := 0; i < n; i++ {
		clk.Advance(2 * time.Hour) // past the failure window: no back-off in the way
		for _, who := range []string{taken, "ghost" + strconv.Itoa(i) + "@example.com"} {
			ch := c.challenge(who)
			start := time.Now()
			c.want(c.do("POST", "/api/v1/sessions", "", map[string]any{"identifier": who, "password": "wrong password 2", "challenge": ch}), http.StatusUnauthorized)
			d := time.Since(start)
			if who == taken {
				known = append(known, d)
			} else {
				unknown = append(unknown, d)
			}
		}
	}
	median := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	mk, mu := median(known), median(unknown)
	if ratio := float64(mk) / float64(mu); ratio < 0.5 || ratio > 2 {
		t.Fatalf("wrong password on a known account takes %v, on an unknown one %v", mk, mu)
	}
}
