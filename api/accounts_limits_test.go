package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// A stranger hammering the owner's identifier from other addresses (wrong passwords from four
// of them, enough for the identifier-wide back-off, and cheap confirm requests, which need no
// challenge) is limited himself; the owner logging in from the address they used before is
// not answered 429. An address the account never logged in from does wait.
func TestStrangerCannotLockOwnerOutOverHTTP(t *testing.T) {
	c, _ := startStack(t, hub.AccountOptions{ChallengeBase: 200, CodeMinDuration: time.Millisecond})
	owner := "olga@example.com"
	c.signUp(owner) // from 127.0.0.1
	for i := 2; i <= 5; i++ {
		s := c.from(fmt.Sprintf("127.0.0.%d", i))
		for j := 0; j < 5; j++ {
			s.want(s.login(owner, "a wrong guess"), http.StatusUnauthorized)
		}
	}
	stranger := c.from("127.0.0.2")
	limited := false
	for i := 0; i < 30 && !limited; i++ {
		r := stranger.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": owner, "code": "123456"})
		limited = r.status == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("30 confirm requests for one identifier from one address were never answered 429")
	}

	c.want(c.login(owner, testPassword), http.StatusCreated)

	r := stranger.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": owner, "code": "123456"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("stranger's next confirm: %d %s", r.status, r.raw)
	}
	if r := c.from("127.0.0.6").login(owner, testPassword); r.status != http.StatusTooManyRequests {
		t.Fatalf("right password from a new address during the identifier-wide back-off: %d %s", r.status, r.raw)
	}
}

// The per-IP limit covers every account endpoint, not only /challenges.
func TestPerIPRateLimitOnAccountEndpoints(t *testing.T) {
	c, clk := startStack(t, hub.AccountOptions{IPBurst: 5, IPEvery: 5 * time.Second})
	resend := func(c *client, i int) resp {
		return c.do("POST", "/api/v1/accounts/resend", "", map[string]string{"identifier": "p" + strconv.Itoa(i) + "@example.com"})
	}
	for i := 0; i < 5; i++ { // a different identifier each time: only the IP limit applies
		c.want(resend(c, i), http.StatusAccepted)
	}
	r := resend(c, 5)
	if r.status != http.StatusTooManyRequests || r.errCode() != "rate_limited" || r.header.Get("Retry-After") != "5" {
		t.Fatalf("6th request: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.raw)
	}
	if r := c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": "p9@example.com", "code": "123456"}); r.status != http.StatusTooManyRequests {
		t.Fatalf("confirm from the same address: %d %s", r.status, r.raw)
	}
	c.from("127.0.0.2").want(resend(c.from("127.0.0.2"), 6), http.StatusAccepted)
	clk.Advance(5 * time.Second)
	c.want(resend(c, 7), http.StatusAccepted)
}

type answer struct {
	status               int
	code, message, field string
}

func (r resp) answer() answer {
	e, _ := r.body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return answer{r.status, r.errCode(), msg, r.errField()}
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// closeTimes fails unless the medians of a and b are within a factor of 2 (generous: the
// point is that no path is an order of magnitude apart; no absolute limits).
func closeTimes(t *testing.T, what string, a, b []time.Duration) {
	t.Helper()
	ma, mb := median(a), median(b)
	t.Logf("%s: median %v against %v", what, ma, mb)
	if ratio := float64(ma) / float64(mb); ratio < 0.5 || ratio > 2 {
		t.Errorf("%s: median %v against %v", what, ma, mb)
	}
}

// Seven wrong codes for a pending account (a live code), a confirmed one (no live confirm
// code) and an unknown identifier get the same answers, in the same time; so do seven wrong
// reset codes after "forgot password", and the first try after a new code was requested.
func TestCodeTriesSameForUnknownIdentifier(t *testing.T) {
	c, _ := startStack(t, hub.AccountOptions{ChallengeBase: 2000, IPBurst: 1000, IdentifierBurst: 1000, SendBurst: 1000,
		ForgotMinDuration: time.Millisecond, CodeMinDuration: 50 * time.Millisecond})
	pending, active, unknown := "pen@example.com", "act@example.com", "nobody@example.com"
	c.want(c.register(pending, testPassword), http.StatusAccepted)
	wrong := "000000"
	if c.lastCode(pending) == wrong {
		wrong = "111111"
	}
	c.signUp(active)
	ids := []string{pending, active, unknown}

	tries := func(path string, n int, extra map[string]string) (map[string][]answer, map[string][]time.Duration) {
		answers, times := map[string][]answer{}, map[string][]time.Duration{}
		for i := 0; i < n; i++ {
			for _, id := range ids { // interleaved, so drift hits all alike
				body := map[string]string{"identifier": id, "code": wrong}
				for k, v := range extra {
					body[k] = v
				}
				start := time.Now()
				r := c.do("POST", path, "", body)
				times[id] = append(times[id], time.Since(start))
				answers[id] = append(answers[id], r.answer())
			}
		}
		return answers, times
	}
	same := func(what string, answers map[string][]answer, times map[string][]time.Duration) {
		t.Helper()
		for _, id := range ids[:2] {
			if !slices.Equal(answers[id], answers[unknown]) {
				t.Errorf("%s: %s answers\n%v\nbut an unknown identifier\n%v", what, id, answers[id], answers[unknown])
			}
			closeTimes(t, what+" "+id+" vs unknown", times[id], times[unknown])
		}
	}

	answers, times := tries("/api/v1/accounts/confirm", 7, nil)
	same("confirm", answers, times)
	if a := answers[unknown]; a[0].status != http.StatusBadRequest || a[0].code != "invalid_code" || a[0].field != "code" ||
		!strings.Contains(a[4].message, "last try") || !strings.Contains(a[6].message, "too many") {
		t.Fatalf("confirm answers: %v", a)
	}
	for _, id := range ids {
		c.want(c.do("POST", "/api/v1/accounts/resend", "", map[string]string{"identifier": id}), http.StatusAccepted)
	}
	answers, times = tries("/api/v1/accounts/confirm", 1, nil)
	same("confirm after resend", answers, times)
	if a := answers[unknown][0]; a.message != "wrong code" {
		t.Fatalf("first try after resend: %v", a)
	}

	for _, id := range ids {
		c.want(c.do("POST", "/api/v1/password/forgot", "", map[string]any{"identifier": id, "challenge": c.challenge(id)}), http.StatusAccepted)
	}
	answers, times = tries("/api/v1/password/reset", 7, map[string]string{"password": "a brand new secret"})
	same("reset", answers, times)
}

// Registering a taken identifier and a new one, and asking for a reset code for either, take
// about the same time (medians of interleaved runs compared to each other).
func TestRegisterAndForgotTiming(t *testing.T) {
	c, _ := startStack(t, hub.AccountOptions{ChallengeBase: 2000, IPBurst: 1000, IdentifierBurst: 1000, SendBurst: 1000})
	taken := "tia@example.com"
	c.signUp(taken)
	const n = 7
	var regKnown, regNew, forgotKnown, forgotNew []time.Duration
	timed := func(path string, body map[string]any) time.Duration {
		start := time.Now()
		c.want(c.do("POST", path, "", body), http.StatusAccepted)
		return time.Since(start)
	}
	for i := 0; i < n; i++ {
		fresh := "new" + strconv.Itoa(i) + "@example.com"
		regKnown = append(regKnown, timed("/api/v1/accounts", map[string]any{"identifier": taken, "password": "another password 1", "challenge": c.challenge(taken)}))
		regNew = append(regNew, timed("/api/v1/accounts", map[string]any{"identifier": fresh, "password": "another password 1", "challenge": c.challenge(fresh)}))
		forgotKnown = append(forgotKnown, timed("/api/v1/password/forgot", map[string]any{"identifier": taken, "challenge": c.challenge(taken)}))
		ghost := "ghost" + strconv.Itoa(i) + "@example.com"
		forgotNew = append(forgotNew, timed("/api/v1/password/forgot", map[string]any{"identifier": ghost, "challenge": c.challenge(ghost)}))
	}
	closeTimes(t, "register taken vs new", regKnown, regNew)
	closeTimes(t, "forgot known vs unknown", forgotKnown, forgotNew)
}
