package web_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
)

// solved fetches and solves a puzzle for identifier, as the page's script does.
func solved(t *testing.T, api *apiclient.Client, identifier string) string {
	t.Helper()
	ch, err := api.Challenge(ctx(t), identifier)
	if err != nil {
		t.Fatal(err)
	}
	return string(ch)
}

// wantRedirect fails unless resp is a 303 to exactly loc.
func wantRedirect(t *testing.T, what string, resp *http.Response, body, loc string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != loc {
		t.Fatalf("%s: %d to %q, want 303 to %q (%s)", what, resp.StatusCode, resp.Header.Get("Location"), loc, errorOf(body))
	}
}

// errorOf is the text of a page's error element, "" when it has none.
func errorOf(body string) string {
	_, rest, ok := strings.Cut(body, `class="error" role="alert">`)
	if !ok {
		return ""
	}
	msg, _, _ := strings.Cut(rest, "</p>")
	return msg
}

// TestRegisterByPhone: the register page takes a phone number as typed (spaces, 00 prefix),
// normalises it to E.164, sends the code by SMS (to the outbox), and the confirm page
// confirms it; the account then signs in by phone. A national number without the country
// code is refused with the hub's message and the form keeps what was typed.
func TestRegisterByPhone(t *testing.T) {
	h := apptest.Start(t, nil)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	const phone, password = "+14155552671", "boris-password-42"
	b := newBrowser(t, h.URL())

	token := b.csrf("/register")
	resp, body := b.post("/register", url.Values{"csrf": {token}, "identifier": {"4155552671"}, "password": {password},
		"password2": {password}, "challenge": {solved(t, api, "")}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorOf(body), "international") || !strings.Contains(body, `value="4155552671"`) {
		t.Fatalf("national number: %d %q", resp.StatusCode, errorOf(body))
	}
	resp, body = b.post("/register", url.Values{"csrf": {token}, "identifier": {"00 1 415 555 2671"}, "password": {password},
		"password2": {password + "x"}, "challenge": {solved(t, api, phone)}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorOf(body), "differ") || strings.Contains(body, password) {
		t.Fatalf("passwords differ: %d %q", resp.StatusCode, errorOf(body))
	}

	resp, body = b.post("/register", url.Values{"csrf": {token}, "identifier": {"+1 415 555 2671"}, "password": {password},
		"password2": {password}, "challenge": {solved(t, api, phone)}})
	wantRedirect(t, "register by phone", resp, body, "/confirm?done=registered&identifier=%2B14155552671")
	resp, body = b.get(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(html.UnescapeString(body), `value="+14155552671"`) || !strings.Contains(body, `class="notice"`) {
		t.Fatalf("confirm page: %d", resp.StatusCode)
	}
	msgs, err := api.Outbox(ctx(t), phone)
	if err != nil || len(msgs) != 1 || msgs[0].Channel != "sms" || msgs[0].To != phone {
		t.Fatalf("outbox for %s: %+v %v", phone, msgs, err)
	}
	code, err := api.LatestCode(ctx(t), phone, "")
	if err != nil {
		t.Fatal(err)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	token = b.csrf("/confirm?identifier=%2B14155552671")
	resp, body = b.post("/confirm", url.Values{"csrf": {token}, "identifier": {phone}, "code": {wrong}})
	if resp.StatusCode != http.StatusBadRequest || errorOf(body) == "" {
		t.Fatalf("wrong code: %d", resp.StatusCode)
	}
	resp, body = b.post("/confirm", url.Values{"csrf": {token}, "identifier": {phone}, "code": {code}})
	wantRedirect(t, "confirm", resp, body, "/login?done=confirmed&identifier=%2B14155552671")

	resp = b.signIn(api, "+1 (415) 555-2671", password)
	if resp.Header.Get("Location") != "/devices" {
		t.Fatalf("sign in by phone: to %q", resp.Header.Get("Location"))
	}
	if resp, body := b.get("/devices"); resp.StatusCode != http.StatusOK || errorOf(body) != "" {
		t.Fatalf("devices page after signing in by phone: %d", resp.StatusCode)
	}
}

// TestForgotAndReset: "forgot password" answers the same for an identifier with and without
// an account (and sends nothing to the latter); the reset page refuses a wrong code and
// passwords that differ, changes the password with the emailed code, clears this browser's
// cookie and ends every session (another browser's old cookie no longer works); the code
// works once; the old password is refused and the new one signs in.
func TestForgotAndReset(t *testing.T) {
	h := apptest.Start(t, nil)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	const who, oldPW, newPW = "anna@example.com", "anna-likes-long-walks", "anna-new-password-7"
	if _, err := api.CreateAccount(ctx(t), who, oldPW); err != nil {
		t.Fatal(err)
	}
	// Signed in elsewhere before the reset: that session must end.
	other := newBrowser(t, h.URL())
	other.signIn(api, who, oldPW)
	if resp, _ := other.get("/devices"); resp.StatusCode != http.StatusOK {
		t.Fatalf("other browser: %d", resp.StatusCode)
	}

	b := newBrowser(t, h.URL())
	token := b.csrf("/forgot?identifier=anna%40example.com")
	for _, id := range []string{"nobody@example.com", who} {
		resp, body := b.post("/forgot", url.Values{"csrf": {token}, "identifier": {id}, "challenge": {solved(t, api, id)}})
		wantRedirect(t, "forgot "+id, resp, body, "/reset?done=forgot&identifier="+url.QueryEscape(id))
	}
	if msgs, err := api.Outbox(ctx(t), "nobody@example.com"); err != nil || len(msgs) != 0 {
		t.Fatalf("outbox of an identifier without an account: %+v %v", msgs, err)
	}
	resp, body := b.get("/reset?done=forgot&identifier=anna%40example.com")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="reset-form"`) || !strings.Contains(body, `value="anna@example.com"`) ||
		!strings.Contains(body, "reset code is on its way") {
		t.Fatalf("reset page: %d", resp.StatusCode)
	}
	code, err := api.LatestCode(ctx(t), who, "reset")
	if err != nil {
		t.Fatal(err)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	token = b.csrf("/reset")
	resp, body = b.post("/reset", url.Values{"csrf": {token}, "identifier": {who}, "code": {wrong}, "password": {newPW}, "password2": {newPW}})
	if resp.StatusCode != http.StatusBadRequest || errorOf(body) == "" || strings.Contains(body, newPW) {
		t.Fatalf("wrong reset code: %d", resp.StatusCode)
	}
	resp, body = b.post("/reset", url.Values{"csrf": {token}, "identifier": {who}, "code": {code}, "password": {newPW}, "password2": {oldPW}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorOf(body), "differ") {
		t.Fatalf("reset with passwords that differ: %d", resp.StatusCode)
	}

	// This browser is signed in too: the reset signs it out as well.
	b.signIn(api, who, oldPW)
	token = b.csrf("/reset")
	resp, body = b.post("/reset", url.Values{"csrf": {token}, "identifier": {who}, "code": {code}, "password": {newPW}, "password2": {newPW}})
	wantRedirect(t, "reset", resp, body, "/login?done=reset&identifier=anna%40example.com")
	if c := cookie(resp, "dh_session"); c == nil || c.MaxAge >= 0 {
		t.Fatalf("reset does not clear the session cookie: %+v", c)
	}
	if resp, _ := b.get("/devices"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the reset, this browser's /devices: %d", resp.StatusCode)
	}
	if resp, _ := other.get("/devices"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("after the reset, the other browser's old session still works: %d", resp.StatusCode)
	}
	if _, body := b.get("/login?done=reset&identifier=anna%40example.com"); !strings.Contains(body, "password was changed") {
		t.Error("no notice after the reset")
	}

	// The code works once.
	token = b.csrf("/reset")
	resp, body = b.post("/reset", url.Values{"csrf": {token}, "identifier": {who}, "code": {code}, "password": {oldPW}, "password2": {oldPW}})
	if resp.StatusCode != http.StatusBadRequest || errorOf(body) == "" {
		t.Fatalf("reset code used twice: %d", resp.StatusCode)
	}

	token = b.csrf("/login")
	resp, body = b.post("/login", url.Values{"csrf": {token}, "identifier": {who}, "password": {oldPW}, "challenge": {solved(t, api, who)}})
	if resp.StatusCode != http.StatusUnauthorized || errorOf(body) == "" {
		t.Fatalf("old password after the reset: %d", resp.StatusCode)
	}
	b.signIn(api, who, newPW)
	if resp, _ := b.get("/devices"); resp.StatusCode != http.StatusOK {
		t.Fatalf("devices page with the new password: %d", resp.StatusCode)
	}
}
