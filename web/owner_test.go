package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
)

// TestRevokeOtherSessions: "sign out every other session" ends the other browser's session
// and the API token, keeps this one, and the security page then lists this session alone,
// without the button.
func TestRevokeOtherSessions(t *testing.T) {
	h, api, anna := startWithAnna(t)
	const who, password = annaEmail, annaPassword
	b, other := newBrowser(t, h.URL()), newBrowser(t, h.URL())
	b.signIn(api, who, password)
	other.signIn(api, who, password)
	_, body := b.get("/security")
	if n := strings.Count(body, "<tr data-session="); n != 3 || !strings.Contains(body, "Sign out every other session (2)") {
		t.Fatalf("security page before: %d sessions listed", n)
	}
	resp, body := b.post("/security/sessions/revoke-others", url.Values{"csrf": {b.csrf("/security")}})
	wantRedirect(t, "revoke others", resp, body, "/security?done=revokedothers")

	if resp, _ := other.get("/devices"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("the other browser is still signed in: %d", resp.StatusCode)
	}
	if _, err := anna.Devices(ctx(t)); apiclient.Code(err) != "unauthorized" {
		t.Fatalf("the API token still works: %v", err)
	}
	resp, body = b.get("/security?done=revokedothers")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Every other session was signed out.") {
		t.Fatalf("security page after: %d", resp.StatusCode)
	}
	if n := strings.Count(body, "<tr data-session="); n != 1 || !strings.Contains(body, "this browser") || strings.Contains(body, `id="revoke-others"`) {
		t.Fatalf("security page after: %d sessions listed, or the button is still there", n)
	}
}

var commandRowRE = regexp.MustCompile(`<tr data-command="[^"]+" data-type="([a-z]+)" data-state="([a-z]+)">`)

// commandStates is the find page's command history as "type state", newest first.
func commandStates(body string) []string {
	var out []string
	for _, m := range commandRowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+" "+m[2])
	}
	return out
}

// TestFindPageCommands: ring, locate, lock and unlock from the find page reach a connected
// phone, which acknowledges them, and the page shows each state; the unlock button shows only
// in lost mode, and unlocking ends it. A band takes no such commands: the page says so.
func TestFindPageCommands(t *testing.T) {
	h, api, anna := startWithAnna(t)
	c := ctx(t)
	const who, password = annaEmail, annaPassword
	creds, err := anna.RegisterDevice(c, "phone", "Anna's phone", "")
	if err != nil {
		t.Fatal(err)
	}
	phone, err := client.Connect(c, client.Options{Broker: h.MQTTURL(), DeviceID: creds.DeviceID, Secret: creds.Secret, CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	got := make(chan string, 10)
	go func() {
		for cmd := range phone.Commands() {
			got <- cmd.Type
			_ = phone.Ack(c, cmd.ID, devices.AckAcknowledged, "done by the test phone")
		}
	}()

	b := newBrowser(t, h.URL())
	b.signIn(api, who, password)
	find := "/devices/" + creds.DeviceID + "/find"
	_, body := b.get(find)
	if strings.Contains(body, `id="cmd-unlock"`) || strings.Contains(body, `id="lost-mode"`) || !strings.Contains(body, `id="no-commands"`) {
		t.Fatal("find page before any command: unlock offered or lost mode shown")
	}
	send := func(typ string, extra url.Values) {
		t.Helper()
		f := url.Values{"csrf": {b.csrf(find)}, "type": {typ}}
		for k, v := range extra {
			f[k] = v
		}
		resp, body := b.post("/devices/"+creds.DeviceID+"/commands", f)
		wantRedirect(t, typ, resp, body, find+"?done=sent")
		select {
		case g := <-got:
			if g != typ {
				t.Fatalf("sent %s, the phone got %s", typ, g)
			}
		case <-c.Done():
			t.Fatalf("%s never reached the phone", typ)
		}
	}
	send(devices.CmdRing, nil)
	send(devices.CmdLocate, nil)
	send(devices.CmdLock, url.Values{"message": {"Please call"}, "contact_number": {"+14155550100"}})
	_, body = b.get(find + "?done=sent")
	if !strings.Contains(body, "The command was sent.") || !strings.Contains(body, `id="lost-mode"`) || !strings.Contains(body, `id="cmd-unlock"`) {
		t.Fatal("find page after lock: no notice, lost mode or unlock button")
	}
	send(devices.CmdUnlock, nil)
	want := []string{"unlock acknowledged", "lock acknowledged", "locate acknowledged", "ring acknowledged"}
	apptest.Eventually(t, 10*time.Second, func() error {
		_, body = b.get(find)
		if got := commandStates(body); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("command history %v, want %v", got, want)
		}
		return nil
	})
	if strings.Contains(body, `id="lost-mode"`) || strings.Contains(body, `id="cmd-unlock"`) {
		t.Fatal("still in lost mode after unlock")
	}
	if !strings.Contains(body, "<td>web</td>") {
		t.Error("commands from the page not marked as issued by web")
	}

	// A band is no phone: ring is refused with the hub's message.
	band := bindGadget(t, h, api, anna, "band")
	resp, body := b.post("/devices/"+band+"/commands", url.Values{"csrf": {b.csrf(find)}, "type": {"ring"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorOf(body), "nly phones and tablets") {
		t.Fatalf("ring a band: %d %q", resp.StatusCode, errorOf(body))
	}
}

// TestUnbindAsksForThePassword: the device page's unbind needs the account password again:
// none (400) or a wrong one (401) is refused and the device stays; the right one unbinds.
func TestUnbindAsksForThePassword(t *testing.T) {
	h, api, anna := startWithAnna(t)
	c := ctx(t)
	const who, password = annaEmail, annaPassword
	creds, err := anna.RegisterDevice(c, "phone", "Anna's phone", "")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, h.URL())
	b.signIn(api, who, password)
	path := "/devices/" + creds.DeviceID
	for pw, status := range map[string]int{"": http.StatusBadRequest, "not my password": http.StatusUnauthorized} {
		resp, body := b.post(path+"/unbind", url.Values{"csrf": {b.csrf(path)}, "password": {pw}})
		if resp.StatusCode != status || !strings.Contains(errorOf(body), "password") || !strings.Contains(body, `id="unbind-form"`) {
			t.Fatalf("unbind with password %q: %d %q", pw, resp.StatusCode, errorOf(body))
		}
	}
	if ds, err := anna.Devices(c); err != nil || len(ds) != 1 {
		t.Fatalf("devices after refused unbinds: %+v %v", ds, err)
	}
	resp, body := b.post(path+"/unbind", url.Values{"csrf": {b.csrf(path)}, "password": {password}})
	wantRedirect(t, "unbind", resp, body, "/devices?done=unbound")
	if ds, err := anna.Devices(c); err != nil || len(ds) != 0 {
		t.Fatalf("devices after unbinding: %+v %v", ds, err)
	}
	if resp, _ := b.get(path); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the unbound device's page: %d", resp.StatusCode)
	}
}
