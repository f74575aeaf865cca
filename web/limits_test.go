package web_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
)

// TestChallengeRequired: register, sign in and "forgot password" need a solved puzzle from
// the page exactly as from the API: none, one that is not JSON and a puzzle used twice are
// refused with 403 and the hub's message, the form keeping the identifier.
func TestChallengeRequired(t *testing.T) {
	const who, password = "anna@example.com", "anna-likes-long-walks"
	forms := map[string]url.Values{
		"/register": {"identifier": {"new@example.com"}, "password": {password}, "password2": {password}},
		"/login":    {"identifier": {who}, "password": {password}},
		"/forgot":   {"identifier": {who}},
	}
	for path, form := range forms {
		// A hub per form: each refusal makes the next puzzle from this IP harder.
		h := apptest.Start(t, nil)
		api := apiclient.New(h.URL())
		api.AdminToken = h.Config.Admin.Token
		if _, err := api.CreateAccount(ctx(t), who, password); err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t, h.URL())
		token := b.csrf("/login")
		for what, challenge := range map[string]string{
			// The page's script fills the field; the portal passes anything that is not
			// JSON on as an answer the hub refuses (a forged JSON answer is the hub's test).
			"none":     "",
			"not JSON": "solved, honestly",
		} {
			f := url.Values{"csrf": {token}, "challenge": {challenge}}
			for k, v := range form {
				f[k] = v
			}
			resp, body := b.post(path, f)
			if resp.StatusCode != http.StatusForbidden || errorOf(body) == "" || !strings.Contains(body, `value="`+form.Get("identifier")+`"`) {
				t.Errorf("POST %s with challenge %s: %d %q", path, what, resp.StatusCode, errorOf(body))
			}
		}
		// Solved after the failures, which made the puzzle harder.
		used := solved(t, api, form.Get("identifier"))
		f := url.Values{"csrf": {token}, "challenge": {used}}
		for k, v := range form {
			f[k] = v
		}
		if resp, body := b.post(path, f); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s with a solved challenge: %d %q", path, resp.StatusCode, errorOf(body))
		}
		if path == "/login" {
			// Signed in now; start again anonymous for the replay.
			b = newBrowser(t, h.URL())
			token = b.csrf("/login")
			f.Set("csrf", token)
		}
		if resp, body := b.post(path, f); resp.StatusCode != http.StatusForbidden || errorOf(body) == "" {
			t.Errorf("POST %s with a challenge used before: %d %q", path, resp.StatusCode, errorOf(body))
		}
	}
}

// TestPortalRateLimits: the pages share the API's limits, because both call the hub with the
// client's IP and identifier. Codes sent through the API and through the page come out of one
// budget, and the page's refusal is a 429 with Retry-After and a message saying to wait;
// failed sign-ins through the API lock the page's sign-in too, and the reverse.
func TestPortalRateLimits(t *testing.T) {
	h, api, _ := startWithAnna(t)
	const who, password = annaEmail, annaPassword
	b := newBrowser(t, h.URL())
	token := b.csrf("/forgot")

	// Codes: how many reset codes the API sends Boris before refusing, against Anna, who
	// first asks for one on the page: the page's code comes out of the same budget, and once
	// it is spent the page is refused too.
	if _, err := api.CreateAccount(ctx(t), "boris@example.com", "boris-password-42"); err != nil {
		t.Fatal(err)
	}
	apiBudget := func(id string) int {
		for n := range 10 {
			err := api.Forgot(ctx(t), id)
			if apiclient.Code(err) == "rate_limited" {
				return n
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		t.Fatalf("the API sent %s 10 codes at once", id)
		return 0
	}
	resp, body := b.post("/forgot", url.Values{"csrf": {token}, "identifier": {who}, "challenge": {solved(t, api, who)}})
	wantRedirect(t, "reset code from the page", resp, body, "/reset?done=forgot&identifier=anna%40example.com")
	if anna, boris := apiBudget(who), apiBudget("boris@example.com"); anna != boris-1 || anna < 1 {
		t.Fatalf("after one code from the page the API sent Anna %d codes, Boris %d without it", anna, boris)
	}
	resp, body = b.post("/forgot", url.Values{"csrf": {token}, "identifier": {who}, "challenge": {solved(t, api, who)}})
	wantLimited(t, "reset code from the page after the API spent the budget", resp, body, "retry later")

	// Failed sign-ins: four through the API and one through the page lock the pair
	// (identifier, IP); the right password is then refused on the page as in the API.
	for range 4 {
		if _, err := api.Login(ctx(t), who, "wrong password"); apiclient.Code(err) != "unauthorized" {
			t.Fatalf("wrong password in the API: %v", err)
		}
	}
	token = b.csrf("/login")
	resp, body = b.post("/login", url.Values{"csrf": {token}, "identifier": {who}, "password": {"wrong again"}, "challenge": {solved(t, api, who)}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("fifth wrong password, on the page: %d %q", resp.StatusCode, errorOf(body))
	}
	resp, body = b.post("/login", url.Values{"csrf": {token}, "identifier": {who}, "password": {password}, "challenge": {solved(t, api, who)}})
	wantLimited(t, "sign-in after five failures", resp, body, "too many failed logins")
	if cookie(resp, "dh_session") != nil {
		t.Fatal("a locked sign-in set a session cookie")
	}
	if _, err := api.Login(ctx(t), who, password); apiclient.Code(err) != "rate_limited" {
		t.Fatalf("API sign-in after failures on the page: %v", err)
	}
}

// wantLimited fails unless the page is a 429 with a whole-second Retry-After and an error
// that says msg and how long to wait.
func wantLimited(t *testing.T, what string, resp *http.Response, body, msg string) {
	t.Helper()
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || err != nil || ra < 1 {
		t.Fatalf("%s: %d, Retry-After %q, want 429 with seconds", what, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if e := errorOf(body); !strings.Contains(strings.ToLower(e), msg) || !strings.Contains(e, "(about "+strconv.Itoa(ra)+" s)") {
		t.Fatalf("%s: error %q, want %q and the wait", what, e, msg)
	}
}

// TestNextStaysOnTheSite: the sign-in page's ?next= goes back to a local page after signing
// in, and every attempt to send the browser to another site lands on /devices instead.
func TestNextStaysOnTheSite(t *testing.T) {
	h, api, _ := startWithAnna(t)
	const who, password = annaEmail, annaPassword
	// A signed-out GET of a page sends the browser to sign in with the page as next=.
	b := newBrowser(t, h.URL())
	resp, _ := b.get("/security?x=1")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fsecurity%3Fx%3D1" {
		t.Fatalf("signed-out /security: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for next, want := range map[string]string{
		"/security?x=1":        "/security?x=1",
		"//evil.example":       "/devices",
		"https://evil.example": "/devices",
		"/\\evil.example":      "/devices",
		"/\t/evil.example":     "/devices",
		"javascript:alert(1)":  "/devices",
	} {
		b := newBrowser(t, h.URL())
		resp, body := b.get("/login?next=" + url.QueryEscape(next))
		m := csrfRE.FindStringSubmatch(body)
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("GET /login?next=%q: %d", next, resp.StatusCode)
		}
		resp, body = b.post("/login", url.Values{"csrf": {m[1]}, "identifier": {who}, "password": {password},
			"challenge": {solved(t, api, who)}, "next": {next}})
		wantRedirect(t, "sign in with next="+strconv.Quote(next), resp, body, want)
	}
}
