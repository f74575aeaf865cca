package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/web"
)

const wantCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// browser is a cookie-keeping HTTP client that does not follow redirects, so tests see
// each answer.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.base + path)
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.PostForm(b.base+path, form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf loads a page and returns its form token.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	resp, body := b.get(path)
	m := csrfRE.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		b.t.Fatalf("GET %s: %d, no csrf token", path, resp.StatusCode)
	}
	return m[1]
}

func cookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Anna's account in the tests that sign her in through the pages.
const annaEmail, annaPassword = "anna@example.com", "anna-likes-long-walks"

// startWithAnna starts a hub and creates Anna's confirmed account through the admin fast
// path; it returns the hub, the admin API client and Anna's API client.
func startWithAnna(t *testing.T) (*apptest.Hub, *apiclient.Client, *apiclient.Client) {
	t.Helper()
	h := apptest.Start(t, nil)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	l, err := api.CreateAccount(ctx(t), annaEmail, annaPassword)
	if err != nil {
		t.Fatal(err)
	}
	return h, api, api.WithToken(l.Token)
}

// bindGadget provisions a gadget of typ and binds it to owner with the code the hub makes for
// it, straight from the hub (MQTT is not what the portal tests are about); the binding
// itself goes through the API like the owner's. It returns the gadget's device ID.
func bindGadget(t *testing.T, h *apptest.Hub, api, owner *apiclient.Client, typ string) string {
	t.Helper()
	c := ctx(t)
	creds, err := api.Provision(c, typ, 1)
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.Hub().DeviceIdentity(c, creds[0].DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := h.Hub().RequestBindCode(c, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Bind(c, id.DeviceID, bc.Code); err != nil {
		t.Fatal(err)
	}
	return id.DeviceID
}

// signIn signs in through the portal's form, solving the challenge in Go as the page's
// script does in the browser.
func (b *browser) signIn(api *apiclient.Client, identifier, password string) *http.Response {
	b.t.Helper()
	token := b.csrf("/login")
	ch, err := api.Challenge(ctx(b.t), identifier)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, body := b.post("/login", url.Values{"csrf": {token}, "identifier": {identifier}, "password": {password}, "challenge": {string(ch)}})
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	return resp
}

func TestHeadersAndCookies(t *testing.T) {
	h := apptest.Start(t, nil)
	b := newBrowser(t, h.URL())
	resp, body := b.get("/login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="login-form"`) {
		t.Fatalf("GET /login: %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != wantCSP {
		t.Errorf("CSP = %q", got)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("framing/sniffing headers: %v", resp.Header)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "<style") {
		t.Errorf("inline script or style in the page (the CSP would block it)")
	}
	c := cookie(resp, "dh_csrf")
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure {
		t.Fatalf("csrf cookie = %+v", c)
	}
	// Static files come from the hub itself.
	for _, p := range []string{"/static/app.css", "/static/pow.js"} {
		if resp, _ := b.get(p); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}

	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	if _, err := api.CreateAccount(ctx(t), "anna@example.com", "anna-likes-long-walks"); err != nil {
		t.Fatal(err)
	}
	resp = b.signIn(api, "anna@example.com", "anna-likes-long-walks")
	s := cookie(resp, "dh_session")
	if s == nil || !s.HttpOnly || s.SameSite != http.SameSiteLaxMode || s.Secure || s.Path != "/" || !strings.HasPrefix(s.Value, "dh_") {
		t.Fatalf("session cookie = %+v", s)
	}
	if resp.Header.Get("Location") != "/devices" {
		t.Fatalf("after sign-in: Location %q", resp.Header.Get("Location"))
	}
	if resp, body := b.get("/devices"); resp.StatusCode != http.StatusOK || strings.Contains(body, `class="error"`) {
		t.Fatalf("devices page: %d", resp.StatusCode)
	}
}

// TestSecureCookies serves the portal as with TLS on: every cookie is Secure.
func TestSecureCookies(t *testing.T) {
	h := apptest.Start(t, nil)
	p, err := web.New(web.Options{Hub: h.Hub(), Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(p)
	defer srv.Close()
	b := newBrowser(t, srv.URL)
	b.c.Transport = srv.Client().Transport
	resp, _ := b.get("/login")
	if c := cookie(resp, "dh_csrf"); c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("csrf cookie over TLS = %+v", c)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS header with TLS")
	}
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	if _, err := api.CreateAccount(ctx(t), "anna@example.com", "anna-likes-long-walks"); err != nil {
		t.Fatal(err)
	}
	resp = b.signIn(api, "anna@example.com", "anna-likes-long-walks")
	if c := cookie(resp, "dh_session"); c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie over TLS = %+v", c)
	}
}

func TestCSRF(t *testing.T) {
	h := apptest.Start(t, nil)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	if _, err := api.CreateAccount(ctx(t), "anna@example.com", "anna-likes-long-walks"); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, h.URL())
	token := b.csrf("/login")

	t.Run("anonymous form without token", func(t *testing.T) {
		resp, body := b.post("/login", url.Values{"identifier": {"anna@example.com"}, "password": {"anna-likes-long-walks"}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `class="error"`) {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	t.Run("token of another browser", func(t *testing.T) {
		other := newBrowser(t, h.URL())
		otherToken := other.csrf("/login")
		resp, _ := b.post("/register", url.Values{"csrf": {otherToken}, "identifier": {"x@example.com"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	t.Run("cross-site origin", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.URL()+"/confirm", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})

	b.signIn(api, "anna@example.com", "anna-likes-long-walks")
	t.Run("signed-in form without token", func(t *testing.T) {
		resp, _ := b.post("/logout", url.Values{})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %d", resp.StatusCode)
		}
		resp, _ = b.post("/security/sessions/revoke-others", url.Values{})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	t.Run("token from before sign-in", func(t *testing.T) {
		// Tokens are bound to the session: one from the anonymous page no longer works.
		resp, _ := b.post("/logout", url.Values{"csrf": {token}})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	t.Run("valid token signs out", func(t *testing.T) {
		resp, _ := b.post("/logout", url.Values{"csrf": {b.csrf("/devices")}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("got %d", resp.StatusCode)
		}
		if resp, _ := b.get("/devices"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Fatalf("after sign-out /devices: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestOtherAccountsDevicesAre404(t *testing.T) {
	h := apptest.Start(t, nil)
	c := ctx(t)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	if _, err := api.CreateAccount(c, "anna@example.com", "anna-likes-long-walks"); err != nil {
		t.Fatal(err)
	}
	lb, err := api.CreateAccount(c, "boris@example.com", "boris-password-42")
	if err != nil {
		t.Fatal(err)
	}
	boris := api.WithToken(lb.Token)
	phone, err := boris.RegisterDevice(c, "phone", "Boris's phone", "")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, h.URL())
	b.signIn(api, "anna@example.com", "anna-likes-long-walks")
	for _, p := range []string{"/devices/" + phone.DeviceID, "/devices/" + phone.DeviceID + "/data", "/devices/" + phone.DeviceID + "/find",
		"/devices/dev_doesnotexist", "/devices/..%2f..%2fetc", "/nowhere"} {
		resp, body := b.get(p)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `id="not-found"`) || strings.Contains(body, "Boris") {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	token := b.csrf("/devices")
	for _, p := range []string{"/devices/" + phone.DeviceID + "/rename", "/devices/" + phone.DeviceID + "/unbind", "/devices/" + phone.DeviceID + "/commands"} {
		resp, _ := b.post(p, url.Values{"csrf": {token}, "name": {"mine now"}, "password": {"anna-likes-long-walks"}, "type": {"ring"}})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s: %d", p, resp.StatusCode)
		}
	}
	ds, err := boris.Devices(c)
	if err != nil || len(ds) != 1 || ds[0].Name != "Boris's phone" {
		t.Fatalf("Boris's devices changed: %+v %v", ds, err)
	}
	// Someone else's session cannot be signed out either.
	resp, _ := b.post("/security/sessions/ses_notyours/revoke", url.Values{"csrf": {token}})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoke another's session: %d", resp.StatusCode)
	}
}

func TestEscaping(t *testing.T) {
	h := apptest.Start(t, nil)
	c := ctx(t)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	l, err := api.CreateAccount(c, "anna@example.com", "anna-likes-long-walks")
	if err != nil {
		t.Fatal(err)
	}
	anna := api.WithToken(l.Token)
	phone, err := anna.RegisterDevice(c, "phone", `<script>alert(1)</script>"'`, "")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, h.URL())
	b.signIn(api, "anna@example.com", "anna-likes-long-walks")
	for _, p := range []string{"/devices", "/devices/" + phone.DeviceID} {
		_, body := b.get(p)
		if strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: device name not escaped", p)
		}
	}
	// The login page reflects the identifier from the URL: escaped too.
	_, body := b.get("/login?identifier=%22%3E%3Cscript%3Ex%3C/script%3E")
	if strings.Contains(body, "<script>x") {
		t.Error("identifier reflected unescaped")
	}
	// Unknown ?done= values show nothing (?next= is TestNextStaysOnTheSite's).
	if _, body := b.get("/login?done=%3Cb%3Ehi"); strings.Contains(body, `class="notice"`) {
		t.Error("unknown notice shown")
	}
}

func TestConfirmLinkAndAPIPaths(t *testing.T) {
	h := apptest.Start(t, nil)
	b := newBrowser(t, h.URL())
	req, _ := http.NewRequest(http.MethodGet, h.URL()+"/api/v1/accounts/confirm?token=abc", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="link-form"`) || !strings.Contains(string(body), `value="abc"`) {
		t.Fatalf("browser opening the emailed link: %d %s", resp.StatusCode, body)
	}
	// Programs keep the JSON API.
	resp, err = apptest.Get(t, h.URL()+"/api/v1/accounts/confirm?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("API confirm link: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Unknown API paths still answer JSON, not the portal's page.
	resp, err = apptest.Get(t, h.URL()+"/api/v1/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("unknown API path: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// A bad token posted from the page: the error is shown, with the API's status.
	token := b.csrf("/confirm/link?token=abc")
	resp2, body2 := b.post("/confirm/link", url.Values{"csrf": {token}, "token": {"abc"}})
	if resp2.StatusCode != http.StatusBadRequest || !strings.Contains(body2, `class="error"`) {
		t.Fatalf("bad link: %d", resp2.StatusCode)
	}
}

// TestWipeNeedsConfirmation: wiping cannot be undone, so the page refuses it without the
// confirmation box and the account password, and nothing reaches the device.
func TestWipeNeedsConfirmation(t *testing.T) {
	h := apptest.Start(t, nil)
	c := ctx(t)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	l, err := api.CreateAccount(c, "anna@example.com", "anna-likes-long-walks")
	if err != nil {
		t.Fatal(err)
	}
	phone, err := api.WithToken(l.Token).RegisterDevice(c, "phone", "Anna's phone", "")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, h.URL())
	b.signIn(api, "anna@example.com", "anna-likes-long-walks")
	path := "/devices/" + phone.DeviceID
	token := b.csrf(path + "/find")
	resp, body := b.post(path+"/commands", url.Values{"csrf": {token}, "type": {"wipe"}, "password": {"anna-likes-long-walks"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Tick the box") {
		t.Fatalf("wipe without confirmation: %d", resp.StatusCode)
	}
	resp, body = b.post(path+"/commands", url.Values{"csrf": {token}, "type": {"wipe"}, "confirm": {"yes"}, "password": {"wrong password"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `class="error"`) {
		t.Fatalf("wipe with a wrong password: %d", resp.StatusCode)
	}
	cmds, err := h.Hub().Commands(c, l.AccountID, phone.DeviceID, 10)
	if err != nil || len(cmds) != 0 {
		t.Fatalf("commands after refused wipes: %+v %v", cmds, err)
	}
	// A lock without a contact number is refused with the hub's message, the form kept.
	resp, body = b.post(path+"/commands", url.Values{"csrf": {token}, "type": {"lock"}, "message": {"call me <b>"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "call me &lt;b&gt;") {
		t.Fatalf("lock without a number: %d", resp.StatusCode)
	}
	resp, _ = b.post(path+"/commands", url.Values{"csrf": {token}, "type": {"wipe"}, "confirm": {"yes"}, "password": {"anna-likes-long-walks"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirmed wipe: %d", resp.StatusCode)
	}
	if cmds, err := h.Hub().Commands(c, l.AccountID, phone.DeviceID, 10); err != nil || len(cmds) != 1 || cmds[0].Type != "wipe" || cmds[0].IssuedBy != "web" {
		t.Fatalf("commands after the confirmed wipe: %+v %v", cmds, err)
	}
}

// pairedLinks returns the IDs the paired-with cell of a device links to: on the devices page
// the row of deviceID, on a device page the "paired" element.
func pairedLinks(t *testing.T, body, deviceID string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<dd id="paired">(.*?)</dd>`)
	if deviceID != "" {
		re = regexp.MustCompile(`(?s)<tr data-device="` + regexp.QuoteMeta(deviceID) + `">.*?<td>([^<]*(?:<a [^>]*>[^<]*</a>[^<]*)*)</td>\s*</tr>`)
	}
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no paired-with cell for %q in the page", deviceID)
	}
	ids := []string{}
	for _, l := range regexp.MustCompile(`<a href="/devices/([^"]+)" data-paired="([^"]+)">([^<]*)</a>`).FindAllStringSubmatch(m[1], -1) {
		if l[1] != l[2] {
			t.Fatalf("link to %s marked %s", l[1], l[2])
		}
		ids = append(ids, l[1]+" "+l[3])
	}
	return ids
}

// TestPairedDevicesShown: the devices page and each device page name the device's partner
// and link to it; after unpairing and after unbinding nothing is listed; another account
// gets the 404 page for the band.
func TestPairedDevicesShown(t *testing.T) {
	h := apptest.Start(t, nil)
	c := ctx(t)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	l, err := api.CreateAccount(c, "anna@example.com", "anna-likes-long-walks")
	if err != nil {
		t.Fatal(err)
	}
	anna := api.WithToken(l.Token)
	if _, err := api.CreateAccount(c, "boris@example.com", "boris-password-42"); err != nil {
		t.Fatal(err)
	}
	phone, err := anna.RegisterDevice(c, "phone", "Annas phone", "")
	if err != nil {
		t.Fatal(err)
	}
	band := bindGadget(t, h, api, anna, "band")
	hb := h.Hub()
	if err := anna.Do(c, http.MethodPatch, "/api/v1/devices/"+band, map[string]string{"name": "Running band"}, nil); err != nil {
		t.Fatal(err)
	}
	phoneID, err := hb.DeviceIdentity(c, phone.DeviceID)
	if err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t, h.URL())
	b.signIn(api, "anna@example.com", "anna-likes-long-walks")
	check := func(when string, wantPhone, wantBand []string) {
		t.Helper()
		_, list := b.get("/devices")
		if got := pairedLinks(t, list, phone.DeviceID); !slices.Equal(got, wantPhone) {
			t.Errorf("%s: devices page, phone paired with %v, want %v", when, got, wantPhone)
		}
		if wantBand != nil {
			if got := pairedLinks(t, list, band); !slices.Equal(got, wantBand) {
				t.Errorf("%s: devices page, band paired with %v, want %v", when, got, wantBand)
			}
		}
		for id, want := range map[string][]string{phone.DeviceID: wantPhone, band: wantBand} {
			if want == nil {
				continue // not in the account
			}
			resp, page := b.get("/devices/" + id)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: GET /devices/%s: %d", when, id, resp.StatusCode)
			}
			if got := pairedLinks(t, page, ""); !slices.Equal(got, want) {
				t.Errorf("%s: device page of %s paired with %v, want %v", when, id, got, want)
			}
		}
	}
	none := []string{}
	check("before pairing", none, none)

	if err := hb.Pair(c, phoneID, band); err != nil {
		t.Fatal(err)
	}
	check("paired", []string{band + " Running band"}, []string{phone.DeviceID + " Annas phone"})

	// Boris sees the 404 page for Anna's band, with nothing of it on the page.
	bb := newBrowser(t, h.URL())
	bb.signIn(api, "boris@example.com", "boris-password-42")
	for _, p := range []string{"/devices/" + band, "/devices/" + phone.DeviceID} {
		resp, body := bb.get(p)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `id="not-found"`) || strings.Contains(body, "Running band") || strings.Contains(body, "Annas phone") {
			t.Errorf("Boris GET %s: %d", p, resp.StatusCode)
		}
	}
	if _, body := bb.get("/devices"); strings.Contains(body, band) || strings.Contains(body, "Running band") {
		t.Error("Boris's devices page shows Anna's band")
	}

	if err := hb.Unpair(c, phoneID, band); err != nil {
		t.Fatal(err)
	}
	check("unpaired", none, none)

	if err := hb.Pair(c, phoneID, band); err != nil {
		t.Fatal(err)
	}
	check("paired again", []string{band + " Running band"}, []string{phone.DeviceID + " Annas phone"})
	resp, body := b.post("/devices/"+band+"/unbind", url.Values{"csrf": {b.csrf("/devices/" + band)}, "password": {"anna-likes-long-walks"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("unbind the band: %d %s", resp.StatusCode, body)
	}
	check("band unbound", none, nil)
}
