package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
)

// portalBrowser drives Debian's Chromium, headless, through the portal. Every page it loads
// is checked: the HTTP status is the one expected, and no element of class "error" (where
// the templates put error messages) is on a page that should succeed. Script exceptions and
// console errors (a CSP violation is one) fail the test at the end, and so does every request
// to the hub's own origin other than a page itself (whose status each step checks) that fails
// or answers 400 or more: a stylesheet, script or fetch the page needs.
type portalBrowser struct {
	t        *testing.T
	ctx      context.Context
	base     string
	shotsDir string

	mu       sync.Mutex
	problems []string
	// requests are the hub's own requests in flight, by ID, for the URL of a failed one
	// (Network.loadingFailed names only the ID).
	requests map[network.RequestID]string
	// elsewhere counts requests to other origins: there should be none (nothing on a page
	// loads from outside the hub, and the flags stop Chromium's own traffic).
	elsewhere []string
}

func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("needs Debian's chromium package (apt-get install chromium); .ci/run installs it")
	return ""
}

func newPortalBrowser(t *testing.T, base string) *portalBrowser {
	t.Helper()
	path := findChromium(t)
	// Exactly these flags: no sandbox (tests run as root in containers), nothing that talks
	// to Google, and a profile of our own.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	shots := os.Getenv("DEVICEHUB_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(t.TempDir(), "screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &portalBrowser{t: t, ctx: ctx, base: base, shotsDir: shots, requests: map[network.RequestID]string{}}
	// The first Run starts the browser and lives as long as ctx: no timeout on it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, 900)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, b.onEvent); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("browser: %s", p)
		}
		for _, u := range b.elsewhere {
			t.Logf("browser: request outside the hub (ignored): %s", u)
		}
		t.Logf("screenshots in %s", b.shotsDir)
	})
	return b
}

// sameOrigin reports whether u is on the hub under test (scheme, host and port).
func (b *portalBrowser) sameOrigin(u string) bool {
	return u == b.base || strings.HasPrefix(u, b.base+"/")
}

func (b *portalBrowser) onEvent(ev any) {
	var problem string
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.mu.Lock()
		if e.Request != nil && b.sameOrigin(e.Request.URL) {
			b.requests[e.RequestID] = e.Request.URL
		} else if e.Request != nil && !strings.HasPrefix(e.Request.URL, "data:") {
			b.elsewhere = append(b.elsewhere, e.Request.URL)
		}
		b.mu.Unlock()
	case *network.EventResponseReceived:
		// Pages are checked by step against the status the test expects (a 404 page can be
		// right); anything a page loads must succeed.
		if e.Response != nil && b.sameOrigin(e.Response.URL) && e.Type != network.ResourceTypeDocument && e.Response.Status >= 400 {
			problem = fmt.Sprintf("%s %s answered %d", e.Type, e.Response.URL, e.Response.Status)
		}
	case *network.EventLoadingFinished:
		b.mu.Lock()
		delete(b.requests, e.RequestID)
		b.mu.Unlock()
	case *network.EventLoadingFailed:
		b.mu.Lock()
		u, ours := b.requests[e.RequestID]
		delete(b.requests, e.RequestID)
		b.mu.Unlock()
		// A page load the next navigation cancelled is not a failure of the hub.
		if ours && !(e.Canceled && e.Type == network.ResourceTypeDocument) {
			problem = fmt.Sprintf("%s %s failed: %s %s", e.Type, u, e.ErrorText, e.BlockedReason)
		}
	case *runtime.EventExceptionThrown:
		problem = "script exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			problem += " " + e.ExceptionDetails.Exception.Description
		}
	case *cdplog.EventEntryAdded:
		// Statuses are checked page by page; everything else at error level (a CSP
		// violation, a failed script) is a problem.
		if e.Entry.Level == cdplog.EntryLevelError && e.Entry.Source != cdplog.EntrySourceNetwork {
			problem = fmt.Sprintf("console %s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	}
	if problem != "" {
		b.mu.Lock()
		b.problems = append(b.problems, problem)
		b.mu.Unlock()
	}
}

// checkFailedRequestsAreSeen proves the request check works: a stylesheet the hub does not
// have, added to the page, must be reported (and is then taken off the list).
func (b *portalBrowser) checkFailedRequestsAreSeen() {
	b.t.Helper()
	b.eval(`(function () { var l = document.createElement('link'); l.rel = 'stylesheet'; l.href = '/static/missing.css';
		document.head.appendChild(l); return 'added'; })()`)
	// Chromium reports it as a failed load (the 404's text/plain body is refused with
	// nosniff before a response event) and the console complains too.
	missing := b.base + "/static/missing.css"
	apptest.Eventually(b.t, 10*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !slices.ContainsFunc(b.problems, func(p string) bool { return strings.HasPrefix(p, "Stylesheet "+missing+" ") }) {
			return fmt.Errorf("a failed load of the hub's own stylesheet was not reported (problems: %q)", b.problems)
		}
		b.problems = slices.DeleteFunc(b.problems, func(p string) bool { return strings.Contains(p, missing) })
		return nil
	})
}

// step runs actions that load a page (a navigation or a click that sends a form) and checks
// the page that results: its status, and that it shows no error.
func (b *portalBrowser) step(name string, wantStatus int, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		b.t.Fatalf("%s: %v", name, err)
	}
	if resp == nil || resp.Status != int64(wantStatus) {
		got := int64(0)
		if resp != nil {
			got = resp.Status
		}
		b.shot(name + "-failed")
		b.t.Fatalf("%s: HTTP status %d, want %d (%s)", name, got, wantStatus, b.errorText())
	}
	if wantStatus < 400 {
		if msg := b.errorText(); msg != "" {
			b.shot(name + "-failed")
			b.t.Fatalf("%s: the page shows an error: %s", name, msg)
		}
	}
}

// do runs actions that do not load a page.
func (b *portalBrowser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

func (b *portalBrowser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// errorText is the text of the page's error elements, "" when there are none.
func (b *portalBrowser) errorText() string {
	return b.eval(`Array.from(document.querySelectorAll('.error')).map(e => e.textContent.trim()).join(' | ')`)
}

func (b *portalBrowser) text(sel string) string {
	b.t.Helper()
	return b.eval(fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent`, sel))
}

func (b *portalBrowser) location() string {
	return b.eval(`location.pathname + location.search`)
}

// shot saves a full-page screenshot as NAME.png.
func (b *portalBrowser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shotsDir, name+".png"), png, 0o644); err != nil {
		b.t.Error(err)
	}
}

// cookie returns the value of the hub's cookie name in the browser ("" when there is none);
// the DevTools protocol sees HttpOnly cookies too.
func (b *portalBrowser) cookie(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base}})
	if err != nil {
		b.t.Fatalf("cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie puts a cookie for the hub into the browser, as the hub would set it.
func (b *portalBrowser) setCookie(name, value string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	httpOnly := true
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: name, Value: value, URL: b.base + "/",
		Path: "/", HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteLax}); err != nil {
		b.t.Fatalf("set cookie %s: %v", name, err)
	}
}

// fill types value into the input sel as a person would: focus, then key events. It is what
// chromedp.SendKeys does for an input that is not a file picker, without SendKeys' read of
// the node's attributes outside their lock (chromedp v0.23.0 and v0.23.1, query.go), which
// the race detector caught while a DOM event updated them: a failure of this test that was
// not ours.
func (b *portalBrowser) fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.Clear(chromedp.CSS(sel)),
		chromedp.Focus(chromedp.CSS(sel), chromedp.NodeVisible), chromedp.KeyEvent(value))
}

var linkRE = regexp.MustCompile(`/api/v1/accounts/confirm\?token=([A-Za-z0-9_-]+)`)

// TestPortalInBrowser is the portal end to end in a real browser: register (the page solves
// the challenge), confirm with the code from the outbox, sign in, bind a band by its code,
// rename it, see its telemetry charted after it syncs, lock a phone and see the command
// acknowledged, see sessions and the audit log, try another account's device URL (404),
// unbind the band (a wrong password refused, the right one accepted),
// confirm another account by the emailed link, reset the password from the forgot page (the
// old session ends), sign in with the new one, and sign out.
func TestPortalInBrowser(t *testing.T) {
	h := apptest.Start(t, nil)
	b := newPortalBrowser(t, h.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	const who, password = "anna@example.com", "anna-likes-long-walks"

	// Register: the page's script fetches and solves the puzzle before the form goes.
	b.step("register", 200, chromedp.Navigate(h.URL()+"/register"))
	b.checkFailedRequestsAreSeen()
	b.do(b.fill("#identifier", who), b.fill("#password", password), b.fill("#password2", password))
	b.shot("register")
	b.step("register-submit", 200, chromedp.Click(chromedp.CSS("#register-submit")))
	if loc := b.location(); !strings.HasPrefix(loc, "/confirm") {
		t.Fatalf("after registering: at %s", loc)
	}

	// Confirm with the code from the outbox.
	code, err := api.LatestCode(ctx, who, "confirm")
	if err != nil {
		t.Fatal(err)
	}
	b.do(b.fill("#code", code))
	b.shot("confirm")
	b.step("confirm-submit", 200, chromedp.Click(chromedp.CSS("#confirm-submit")))
	if !strings.Contains(b.text(".notice"), "confirmed") {
		t.Fatalf("after confirming: notice %q", b.text(".notice"))
	}

	// Sign in (the identifier is already filled in).
	b.do(b.fill("#password", password))
	b.shot("login")
	b.step("login-submit", 200, chromedp.Click(chromedp.CSS("#login-submit")))
	if loc := b.location(); loc != "/devices" {
		t.Fatalf("after signing in: at %s", loc)
	}
	if b.text("#no-devices") == "" {
		t.Fatal("a new account lists devices")
	}

	// Bind a band: it asks for a code over MQTT with its factory secret, and the owner types
	// its device ID and code into the page.
	band, err := api.Provision(ctx, "band", 1)
	if err != nil {
		t.Fatal(err)
	}
	factory, err := client.Connect(ctx, client.Options{Broker: h.MQTTURL(), DeviceID: band[0].DeviceID, Secret: band[0].Secret, CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer factory.Close()
	raw, err := factory.Request(ctx, devices.OpBindCode, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bc devices.BindCodeResult
	if err := json.Unmarshal(raw, &bc); err != nil {
		t.Fatal(err)
	}
	b.do(b.fill("#bind-device", band[0].DeviceID), b.fill("#bind-code", bc.Code))
	b.step("bind-submit", 200, chromedp.Click(chromedp.CSS("#bind-submit")))
	row := fmt.Sprintf(`tr[data-device=%q]`, band[0].DeviceID)
	if got := b.text(row); !strings.Contains(got, "band") {
		t.Fatalf("the devices page does not list the band: %q", got)
	}
	var secret string
	select {
	case cmd := <-factory.Commands():
		var args devices.BoundArgs
		if cmd.Type != devices.CmdBound || json.Unmarshal(cmd.Args, &args) != nil {
			t.Fatalf("band got %s %s", cmd.Type, cmd.Args)
		}
		secret = args.Secret
	case <-ctx.Done():
		t.Fatal("the band was not told it is bound")
	}
	factory.Close()
	bound, err := client.Connect(ctx, client.Options{Broker: h.MQTTURL(), DeviceID: band[0].DeviceID, Secret: secret, CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bound.Close()
	apptest.Eventually(t, 10*time.Second, func() error {
		b.step("devices", 200, chromedp.Navigate(h.URL()+"/devices"))
		if !strings.Contains(b.text(row), "online") {
			return fmt.Errorf("band not shown online: %q", b.text(row))
		}
		return nil
	})
	b.shot("devices")

	// The device page: rename it.
	b.step("device", 200, chromedp.Click(chromedp.CSS(row+" a")))
	b.do(b.fill("#name", "Running band"))
	b.step("rename-submit", 200, chromedp.Click(chromedp.CSS("#rename-submit")))
	if got := b.text("h1"); got != "Running band" {
		t.Fatalf("after renaming: title %q", got)
	}
	b.shot("device")

	// Data: Anna's phone pairs with the band (a band syncs only while paired), the band sends
	// steps, heart rate and battery, and the data page charts them.
	annaLogin, err := api.Login(ctx, who, password)
	if err != nil {
		t.Fatal(err)
	}
	annaPhone, err := api.WithToken(annaLogin.Token).RegisterDevice(ctx, "phone", "Anna's phone", "imei-anna")
	if err != nil {
		t.Fatal(err)
	}
	phone, err := client.Connect(ctx, client.Options{Broker: h.MQTTURL(), DeviceID: annaPhone.DeviceID, Secret: annaPhone.Secret, CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	if _, err := phone.Request(ctx, devices.OpPair, devices.PairArgs{DeviceID: band[0].DeviceID}); err != nil {
		t.Fatalf("pair: %v", err)
	}
	now := time.Now().UTC()
	for i := range 6 {
		ts := now.Add(-time.Duration(5-i) * 12 * time.Hour)
		if err := bound.PublishTelemetry(ctx, devices.StreamSteps, uint64(i+1), ts, devices.StepsSample{Count: int64(1000 + 500*i)}); err != nil {
			t.Fatalf("steps: %v", err)
		}
		if err := bound.PublishTelemetry(ctx, devices.StreamHeartRate, uint64(i+1), ts, devices.HeartRateSample{BPM: int64(60 + 5*i)}); err != nil {
			t.Fatalf("heart rate: %v", err)
		}
	}
	if err := bound.PublishTelemetry(ctx, devices.StreamBattery, 1, now, devices.BatterySample{Percent: 87}); err != nil {
		t.Fatalf("battery: %v", err)
	}
	b.step("data", 200, chromedp.Navigate(h.URL()+"/devices/"+band[0].DeviceID+"/data?period=7d"))
	if n := b.eval(`String(document.querySelectorAll('figure[data-chart="Steps per day"] rect.bar').length)`); n == "0" {
		t.Fatal("no bars in the steps chart")
	}
	if n := b.eval(`String(document.querySelectorAll('figure[data-chart="Heart rate"] polyline.line').length)`); n != "1" {
		t.Fatalf("heart rate chart has %s lines", n)
	}
	if got := b.text(`figure[data-chart="Heart rate"] p`); !strings.Contains(got, "6 samples") {
		t.Fatalf("heart rate summary %q", got)
	}
	b.shot("data")
	b.step("devices-battery", 200, chromedp.Navigate(h.URL()+"/devices"))
	if got := b.text(row); !strings.Contains(got, "87 %") {
		t.Fatalf("the devices page shows no battery level for the band: %q", got)
	}

	// Find device: the phone reports where it is and acknowledges every command; the owner
	// locks it from the page and sees the command reach "acknowledged".
	if err := phone.PublishTelemetry(ctx, devices.StreamLocation, 1, now, devices.LocationSample{Lat: 52.52, Lon: 13.405, AccuracyM: 25}); err != nil {
		t.Fatalf("location: %v", err)
	}
	go func() {
		for cmd := range phone.Commands() {
			switch cmd.Type {
			case devices.CmdLocate, devices.CmdRing, devices.CmdLock, devices.CmdUnlock, devices.CmdWipe:
				_ = phone.Ack(ctx, cmd.ID, devices.AckAcknowledged, "done in the test phone")
			}
		}
	}()
	b.step("find", 200, chromedp.Navigate(h.URL()+"/devices/"+annaPhone.DeviceID+"/find"))
	if got := b.text("#location"); !strings.Contains(got, "52.52000, 13.40500") || !strings.Contains(got, "25 m") {
		t.Fatalf("location: %q", got)
	}
	b.do(b.fill("#lock-message", "Lost phone, please call"), b.fill("#lock-contact", "+14155550100"))
	b.step("lock-submit", 200, chromedp.Click(chromedp.CSS("#cmd-lock")))
	if !strings.Contains(b.text("#lost-mode"), "+14155550100") {
		t.Fatalf("lost mode not shown: %q", b.text("#lost-mode"))
	}
	apptest.Eventually(t, 15*time.Second, func() error {
		b.step("find-reload", 200, chromedp.Navigate(h.URL()+"/devices/"+annaPhone.DeviceID+"/find"))
		if st := b.eval(`(document.querySelector('tr[data-type="lock"]') || {dataset: {}}).dataset.state || ""`); st != "acknowledged" {
			return fmt.Errorf("lock command is %q", st)
		}
		return nil
	})
	b.shot("find")

	// Security: this session is listed, and the audit log has the binding done on the web.
	b.step("security", 200, chromedp.Navigate(h.URL()+"/security"))
	if !strings.Contains(b.text("#sessions"), "this browser") {
		t.Fatalf("sessions table: %q", b.text("#sessions"))
	}
	if audit := b.text("#audit"); !strings.Contains(audit, "bind") || !strings.Contains(audit, band[0].DeviceID) || !strings.Contains(audit, "web") {
		t.Fatalf("audit table: %q", audit)
	}
	b.shot("security")

	// Another account's device: 404, whatever the URL.
	if _, err := api.CreateAccount(ctx, "+14155552671", "boris-password-42"); err != nil {
		t.Fatal(err)
	}
	lb, err := api.Login(ctx, "+14155552671", "boris-password-42")
	if err != nil {
		t.Fatal(err)
	}
	borisPhone, err := api.WithToken(lb.Token).RegisterDevice(ctx, "phone", "Boris's phone", "imei-boris")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "/data", "/find"} {
		b.step("other-account"+p, 404, chromedp.Navigate(h.URL()+"/devices/"+borisPhone.DeviceID+p))
		if b.text("#not-found") == "" || strings.Contains(b.eval(`document.body.textContent`), "Boris") {
			t.Fatalf("another account's device page %s is not a plain 404", p)
		}
	}
	b.shot("notfound")

	// Unbind the band from its page: the password is asked again; a wrong one is refused
	// with the error on the page and the band stays, the right one unbinds it.
	b.step("device-unbind", 200, chromedp.Navigate(h.URL()+"/devices/"+band[0].DeviceID))
	b.do(b.fill("#unbind-password", "not the password"))
	b.step("unbind-wrong-password", 401, chromedp.Click(chromedp.CSS("#unbind-submit")))
	if msg := b.errorText(); !strings.Contains(msg, "password") {
		t.Fatalf("unbind with a wrong password: error %q", msg)
	}
	b.shot("unbind-refused")
	if ds, err := api.WithToken(annaLogin.Token).Devices(ctx); err != nil || len(ds) != 2 {
		t.Fatalf("devices after a refused unbind: %d %v", len(ds), err)
	}
	b.do(b.fill("#unbind-password", password))
	b.step("unbind-submit", 200, chromedp.Click(chromedp.CSS("#unbind-submit")))
	if loc := b.location(); loc != "/devices?done=unbound" || b.eval(`String(document.querySelectorAll('`+row+`').length)`) != "0" {
		t.Fatalf("after unbinding: at %s, band row %q", loc, b.text(row))
	}

	// Confirm by the emailed link: a third person registers; opening the link in the browser
	// gives the portal's page, and one click confirms.
	const carol = "carol@example.com"
	if err := api.Register(ctx, carol, "carol-password-99"); err != nil {
		t.Fatal(err)
	}
	var link string
	apptest.Eventually(t, 10*time.Second, func() error {
		msgs, err := api.Outbox(ctx, carol)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if mm := linkRE.FindStringSubmatch(m.Body); mm != nil {
				link = h.URL() + "/api/v1/accounts/confirm?token=" + mm[1]
				return nil
			}
		}
		return fmt.Errorf("no link for %s in the outbox", carol)
	})
	b.step("link", 200, chromedp.Navigate(link))
	b.shot("link")
	b.step("link-submit", 200, chromedp.Click(chromedp.CSS("#link-submit")))
	if !strings.Contains(b.text(".notice"), "confirmed") {
		t.Fatalf("after the link: notice %q", b.text(".notice"))
	}
	if _, err := api.Login(ctx, carol, "carol-password-99"); err != nil {
		t.Fatalf("carol signs in after confirming by link: %v", err)
	}

	// Forgot password, from the page: reset with the code from the outbox, then sign in with
	// the new password. The session this browser had before the reset is over: putting its
	// cookie back does not sign the browser in.
	const newPassword = "anna-walks-even-longer-7"
	oldSession := b.cookie("dh_session")
	if oldSession == "" {
		t.Fatal("no session cookie before the reset")
	}
	b.step("forgot", 200, chromedp.Navigate(h.URL()+"/forgot"))
	b.do(b.fill("#identifier", who))
	b.shot("forgot")
	b.step("forgot-submit", 200, chromedp.Click(chromedp.CSS("#forgot-submit")))
	if loc := b.location(); !strings.HasPrefix(loc, "/reset") || !strings.Contains(b.text(".notice"), "reset code") {
		t.Fatalf("after asking for a reset code: at %s, notice %q", loc, b.text(".notice"))
	}
	resetCode, err := api.LatestCode(ctx, who, "reset")
	if err != nil {
		t.Fatal(err)
	}
	b.do(b.fill("#code", resetCode), b.fill("#password", newPassword), b.fill("#password2", newPassword))
	b.shot("reset")
	b.step("reset-submit", 200, chromedp.Click(chromedp.CSS("#reset-submit")))
	if loc := b.location(); !strings.HasPrefix(loc, "/login") || !strings.Contains(b.text(".notice"), "password was changed") {
		t.Fatalf("after the reset: at %s, notice %q", loc, b.text(".notice"))
	}
	if b.cookie("dh_session") != "" {
		t.Fatal("the reset left a session cookie in the browser")
	}
	b.setCookie("dh_session", oldSession)
	b.step("devices-old-session", 200, chromedp.Navigate(h.URL()+"/devices"))
	if loc := b.location(); !strings.HasPrefix(loc, "/login") {
		t.Fatalf("the session from before the reset still works: at %s", loc)
	}
	b.do(b.fill("#identifier", who), b.fill("#password", password))
	b.step("login-old-password", 401, chromedp.Click(chromedp.CSS("#login-submit")))
	b.do(b.fill("#password", newPassword))
	b.step("login-new-password", 200, chromedp.Click(chromedp.CSS("#login-submit")))
	if loc := b.location(); loc != "/devices" {
		t.Fatalf("after signing in with the new password: at %s", loc)
	}

	// Sign out: the session ends, and the pages need signing in again.
	b.step("devices-again", 200, chromedp.Navigate(h.URL()+"/devices"))
	b.step("signout", 200, chromedp.Click(chromedp.CSS("#signout")))
	if loc := b.location(); !strings.HasPrefix(loc, "/login") {
		t.Fatalf("after signing out: at %s", loc)
	}
	b.step("devices-signed-out", 200, chromedp.Navigate(h.URL()+"/devices"))
	if loc := b.location(); !strings.HasPrefix(loc, "/login") {
		t.Fatalf("signed out, /devices shows %s", loc)
	}
}
