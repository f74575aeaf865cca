package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
)

func TestRegisterConfirmLoginMe(t *testing.T) {
	c := startHub(t)
	r := c.want(c.do("POST", "/api/v1/accounts", "", map[string]any{
		"email": "Ann.Lee@Example.COM", "password": testPassword, "challenge": c.challenge("Ann.Lee@Example.COM"),
	}), http.StatusAccepted)
	if r.str("identifier") != "Ann.Lee@example.com" || r.str("kind") != "email" || r.str("status") != "code_sent" {
		t.Fatalf("register answer: %s", r.raw)
	}
	id := "Ann.Lee@example.com"
	msgs := c.outbox(id)
	if len(msgs) != 1 || msgs[0].Channel != "email" || msgs[0].Status != "held" {
		t.Fatalf("outbox: %+v", msgs)
	}
	code := c.lastCode(id)
	if strings.Contains(string(r.raw), code) {
		t.Fatal("the register answer contains the code")
	}
	if !tokenRE.MatchString(msgs[0].Body) {
		t.Fatalf("email has no confirmation link: %q", msgs[0].Body)
	}

	// Not confirmed yet: the right password is not enough.
	if r := c.login(id, testPassword); r.status != http.StatusForbidden || r.errCode() != "account_pending" {
		t.Fatalf("login while pending: %d %s", r.status, r.raw)
	}
	r = c.want(c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"email": id, "code": code}), http.StatusOK)
	if r.str("status") != "confirmed" {
		t.Fatalf("confirm: %s", r.raw)
	}
	login := c.want(c.login(id, testPassword), http.StatusCreated)
	token := login.str("token")
	if !strings.HasPrefix(token, "dh_") || len(token) < 50 {
		t.Fatalf("token %q", token)
	}
	me := c.want(c.do("GET", "/api/v1/me", token, nil), http.StatusOK)
	if me.str("identifier") != id || me.str("status") != "active" || !strings.HasPrefix(me.str("id"), "acc_") {
		t.Fatalf("me: %s", me.raw)
	}
	sessions := c.want(c.do("GET", "/api/v1/sessions", token, nil), http.StatusOK)
	list, _ := sessions.body["sessions"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["current"] != true {
		t.Fatalf("sessions: %s", sessions.raw)
	}
	if r := c.do("GET", "/api/v1/me", "", nil); r.status != http.StatusUnauthorized || r.errCode() != "unauthorized" {
		t.Fatalf("me without token: %d %s", r.status, r.raw)
	}
	if r := c.do("GET", "/api/v1/me", "dh_nonsense", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("me with a bad token: %d %s", r.status, r.raw)
	}
}

func TestRegisterPhoneSMS(t *testing.T) {
	c := startHub(t)
	r := c.want(c.do("POST", "/api/v1/accounts", "", map[string]any{
		"phone": "+1 (415) 555-2671", "password": testPassword, "challenge": c.challenge("+14155552671"),
	}), http.StatusAccepted)
	if r.str("identifier") != "+14155552671" || r.str("kind") != "phone" {
		t.Fatalf("register: %s", r.raw)
	}
	msgs := c.outbox("+1 415 555 2671") // the filter is normalised too
	if len(msgs) != 1 || msgs[0].Channel != "sms" || tokenRE.MatchString(msgs[0].Body) {
		t.Fatalf("outbox: %+v", msgs)
	}
	c.want(c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"phone": "+14155552671", "code": c.lastCode("+14155552671")}), http.StatusOK)
	c.want(c.login("+14155552671", testPassword), http.StatusCreated)
}

// The seed flow: the person clicks the emailed link, then the app continues with the code and
// hears "account already confirmed".
func TestConfirmLinkThenCode(t *testing.T) {
	c := startHub(t)
	id := "bob@example.org"
	c.want(c.register(id, testPassword), http.StatusAccepted)
	body := c.outbox(id)[0].Body
	token := tokenRE.FindStringSubmatch(body)[1]
	code := c.lastCode(id)

	r := c.want(c.do("GET", "/api/v1/accounts/confirm?token="+token, "", nil), http.StatusOK)
	if r.str("status") != "confirmed" {
		t.Fatalf("link: %s", r.raw)
	}
	r = c.want(c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": id, "code": code}), http.StatusOK)
	if r.str("status") != "already_confirmed" || r.str("message") != "account already confirmed" {
		t.Fatalf("code after link: %s", r.raw)
	}
	r = c.want(c.do("GET", "/api/v1/accounts/confirm?token="+token, "", nil), http.StatusOK)
	if r.str("status") != "already_confirmed" {
		t.Fatalf("link again: %s", r.raw)
	}
	// A wrong code does not learn "already confirmed": that would tell who has an account.
	if r := c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": id, "code": "000000"}); r.errCode() != "invalid_code" && code != "000000" {
		t.Fatalf("wrong code after confirmation: %d %s", r.status, r.raw)
	}
	if r := c.do("GET", "/api/v1/accounts/confirm?token=abc", "", nil); r.status != http.StatusBadRequest || r.errCode() != "invalid_code" || r.errField() != "token" {
		t.Fatalf("bad link: %d %s", r.status, r.raw)
	}
	c.want(c.login(id, testPassword), http.StatusCreated)
}

func TestBadInput(t *testing.T) {
	c := startHub(t)
	ch := func() any { return c.challenge("") }
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"bad email", map[string]any{"email": "ann@", "password": testPassword}, 400, "invalid", "email"},
		{"display name", map[string]any{"email": "Ann <ann@example.com>", "password": testPassword}, 400, "invalid", "email"},
		{"bad phone", map[string]any{"phone": "12345", "password": testPassword}, 400, "invalid", "phone"},
		{"invalid phone", map[string]any{"phone": "+1 000 000 0000", "password": testPassword}, 400, "invalid", "phone"},
		{"no identifier", map[string]any{"password": testPassword}, 400, "invalid", "identifier"},
		{"two identifiers", map[string]any{"email": "a@example.com", "phone": "+14155552671", "password": testPassword}, 400, "invalid", "identifier"},
		{"short password", map[string]any{"email": "a@example.com", "password": "short"}, 400, "invalid", "password"},
		{"common password", map[string]any{"email": "a@example.com", "password": "Password123"}, 400, "invalid", "password"},
		{"no challenge", map[string]any{"email": "a@example.com", "password": testPassword}, 403, "challenge_failed", "challenge"},
		{"bad challenge", map[string]any{"email": "a@example.com", "password": testPassword, "challenge": map[string]any{"salt": "x.1.2", "number": 1, "signature": "00"}}, 403, "challenge_failed", "challenge"},
		{"unknown field", map[string]any{"email": "a@example.com", "password": testPassword, "admin": true}, 400, "invalid", "admin"},
		{"wrong type", map[string]any{"email": 42, "password": testPassword}, 400, "invalid", "email"},
		{"malformed", `{"email": "a@example.com",`, 400, "invalid", ""},
		{"not json", `email=a@example.com`, 400, "invalid", ""},
		{"trailing data", `{"email": "a@example.com"} {}`, 400, "invalid", ""},
		{"empty", ``, 400, "invalid", ""},
		{"oversize", `{"email": "` + strings.Repeat("a", 70<<10) + `"}`, 413, "too_large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			r := c.do("POST", "/api/v1/accounts", "", tc.body)
			if r.status != tc.status || r.errCode() != tc.code || r.errField() != tc.field {
				t.Fatalf("got %d %s, want %d %s field %q", r.status, r.raw, tc.status, tc.code, tc.field)
			}
			if msg, _ := r.body["error"].(map[string]any)["message"].(string); msg == "" {
				t.Fatalf("no message: %s", r.raw)
			}
		})
	}
	c.t = t
	// A used challenge does not work twice.
	answer := ch()
	c.want(c.do("POST", "/api/v1/accounts", "", map[string]any{"email": "c@example.com", "password": testPassword, "challenge": answer}), http.StatusAccepted)
	if r := c.do("POST", "/api/v1/accounts", "", map[string]any{"email": "d@example.com", "password": testPassword, "challenge": answer}); r.errCode() != "challenge_failed" {
		t.Fatalf("reused challenge: %d %s", r.status, r.raw)
	}
}

func TestSessionRevoke(t *testing.T) {
	c := startHub(t)
	id := "carol@example.com"
	first := c.signUp(id)
	second := c.want(c.login(id, testPassword), http.StatusCreated)
	secondID := second.body["session"].(map[string]any)["id"].(string)

	c.want(c.do("DELETE", "/api/v1/sessions/"+secondID, first, nil), http.StatusNoContent)
	if r := c.do("GET", "/api/v1/me", second.str("token"), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token still works: %d", r.status)
	}
	c.want(c.do("GET", "/api/v1/me", first, nil), http.StatusOK)
	if r := c.do("DELETE", "/api/v1/sessions/ses_unknown", first, nil); r.status != http.StatusNotFound || r.errCode() != "not_found" {
		t.Fatalf("unknown session: %d %s", r.status, r.raw)
	}
	// Someone else's session is not found either.
	other := c.signUp("dave@example.com")
	if r := c.do("DELETE", "/api/v1/sessions/"+secondID, other, nil); r.status != http.StatusNotFound {
		t.Fatalf("someone else's session: %d %s", r.status, r.raw)
	}
}

func TestForgotAndResetRevokesSessions(t *testing.T) {
	c := startHub(t)
	id := "erin@example.com"
	t1 := c.signUp(id)
	t2 := c.want(c.login(id, testPassword), http.StatusCreated).str("token")

	known := c.want(c.do("POST", "/api/v1/password/forgot", "", map[string]any{"identifier": id, "challenge": c.challenge(id)}), http.StatusAccepted)
	unknown := c.want(c.do("POST", "/api/v1/password/forgot", "", map[string]any{"identifier": "nobody@example.com", "challenge": c.challenge("nobody@example.com")}), http.StatusAccepted)
	if string(known.raw) != string(unknown.raw) {
		t.Fatalf("forgot answers differ:\n%s\n%s", known.raw, unknown.raw)
	}
	if len(c.outbox("nobody@example.com")) != 0 {
		t.Fatal("a message went to an unknown identifier")
	}
	code := c.lastCode(id)
	newPassword := "a brand new secret"
	if r := c.do("POST", "/api/v1/password/reset", "", map[string]string{"identifier": id, "code": code, "password": "12345678"}); r.errField() != "password" {
		t.Fatalf("common new password: %d %s", r.status, r.raw)
	}
	c.want(c.do("POST", "/api/v1/password/reset", "", map[string]string{"identifier": id, "code": code, "password": newPassword}), http.StatusOK)
	for _, tok := range []string{t1, t2} {
		if r := c.do("GET", "/api/v1/me", tok, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("session survived the reset: %d", r.status)
		}
	}
	// Reused code.
	if r := c.do("POST", "/api/v1/password/reset", "", map[string]string{"identifier": id, "code": code, "password": "yet another secret"}); r.status != 400 || r.errCode() != "invalid_code" {
		t.Fatalf("reused reset code: %d %s", r.status, r.raw)
	}
	if r := c.login(id, testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("old password still works: %d", r.status)
	}
	c.want(c.login(id, newPassword), http.StatusCreated)
}

func TestAdminOutboxNeedsToken(t *testing.T) {
	c := startHub(t)
	if r := c.do("GET", "/api/v1/admin/outbox", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("no token: %d", r.status)
	}
	if r := c.do("GET", "/api/v1/admin/outbox", "wrong", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", r.status)
	}
	if r := c.do("GET", "/api/v1/admin/outbox?limit=0", c.admin, nil); r.status != http.StatusBadRequest || r.errField() != "limit" {
		t.Fatalf("bad limit: %d %s", r.status, r.raw)
	}
}

// With notify.driver=webhook the whole hub delivers codes to the gateway, retrying after a
// failure; the outbox records the attempts.
func TestWebhookDriverEndToEnd(t *testing.T) {
	var calls atomic.Int32
	bodies := make(chan map[string]string, 4)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "gateway down", http.StatusServiceUnavailable)
			return
		}
		var m map[string]string
		_ = json.NewDecoder(r.Body).Decode(&m)
		bodies <- m
	}))
	defer gw.Close()
	h := apptest.Start(t, func(cfg *config.Config) {
		cfg.Notify.Driver = "webhook"
		cfg.Notify.WebhookURL = gw.URL
	})
	c := newClient(t, h.URL(), h.Config.Admin.Token)
	id := "+14155552671"
	c.want(c.register(id, testPassword), http.StatusAccepted)
	apptest.Eventually(t, 30*time.Second, func() error {
		msgs := c.outbox(id)
		if len(msgs) != 1 || msgs[0].Status != "sent" {
			return fmt.Errorf("outbox: %+v", msgs)
		}
		if msgs[0].Attempts != 2 {
			return fmt.Errorf("attempts %d, want 2", msgs[0].Attempts)
		}
		return nil
	})
	m := <-bodies
	if m["to"] != id || m["channel"] != "sms" || !codeRE.MatchString(m["body"]) {
		t.Fatalf("gateway got %v", m)
	}
}
