package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
)

// gadget is a band's or scale's settings behaviour on a real connection: every "settings"
// command is applied to the device's SettingsModel (kept across reconnects, as firmware keeps
// it in flash), acknowledged and reported (client.ApplySettings). It never asks with
// settings_get: what it holds came from the hub's commands alone.
type gadget struct {
	t     *testing.T
	id    string
	model *devices.SettingsModel

	mu  sync.Mutex
	got []devices.SettingsArgs // every settings command received, in arrival order
}

func newGadget(t *testing.T, id string) *gadget {
	return &gadget{t: t, id: id, model: devices.NewSettingsModel()}
}

// run connects the gadget and serves its commands until the test ends or the returned stop
// is called. client.Connect fails when the broker refuses the SUBSCRIBE to its own topics, so
// a successful run also means the subscription was granted.
func (g *gadget) run(url, secret string, clean bool) (stop func()) {
	g.t.Helper()
	c, err := client.Connect(testCtx(g.t), client.Options{Broker: url, DeviceID: g.id, Secret: secret, CleanSession: clean})
	if err != nil {
		g.t.Fatalf("connect %s (clean %v): %v", g.id, clean, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for cmd := range c.Commands() {
			if cmd.Type != devices.CmdSettings {
				continue
			}
			var a devices.SettingsArgs
			_ = json.Unmarshal(cmd.Args, &a)
			g.mu.Lock()
			g.got = append(g.got, a)
			g.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := c.ApplySettings(ctx, g.model, cmd); err != nil {
				// Not t.Errorf: the connection may be closing at the end of the test; what
				// matters is checked through the hub's view.
				g.t.Logf("%s: apply settings: %v", g.id, err)
			}
			cancel()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			c.Close() // closes Commands, which ends the loop
			<-done
		})
	}
	g.t.Cleanup(stop)
	return stop
}

// received returns the settings commands received so far for doc.
func (g *gadget) received(doc string) []devices.SettingsArgs {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []devices.SettingsArgs
	for _, a := range g.got {
		if a.Doc == doc {
			out = append(out, a)
		}
	}
	return out
}

// bindGadget provisions a gadget of type typ, binds it to Anna over HTTP with the code it
// shows, and returns its ID and binding secret (the factory connection is closed).
func (w *world) bindGadget(t *testing.T, typ string) (string, string) {
	t.Helper()
	creds := w.provision(t, typ)
	factory := w.connect(t, creds.DeviceID, creds.Secret)
	if err := w.anna.Bind(testCtx(t), creds.DeviceID, bindCode(t, factory)); err != nil {
		t.Fatalf("bind %s: %v", typ, err)
	}
	var bound devices.BoundArgs
	if err := json.Unmarshal(nextCommand(t, factory, devices.CmdBound).Args, &bound); err != nil || bound.Secret == "" {
		t.Fatalf("bound command: %v", err)
	}
	factory.Close()
	w.waitOffline(t, creds.DeviceID)
	return creds.DeviceID, bound.Secret
}

func getSettings(t *testing.T, owner *apiclient.Client, path string) devices.SettingsResult {
	t.Helper()
	var r devices.SettingsResult
	if err := owner.Do(testCtx(t), http.MethodGet, path, nil, &r); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

func putSettings(t *testing.T, owner *apiclient.Client, path, desired string, base int64) (devices.SettingsResult, error) {
	t.Helper()
	var r devices.SettingsResult
	err := owner.Do(testCtx(t), http.MethodPut, path, map[string]any{"desired": json.RawMessage(desired), "base_version": base}, &r)
	return r, err
}

// waitReported waits until the owner sees the device's reported version at want.
func waitReported(t *testing.T, owner *apiclient.Client, deviceID string, want int64) devices.SettingsResult {
	t.Helper()
	var r devices.SettingsResult
	apptest.Eventually(t, 10*time.Second, func() error {
		r = getSettings(t, owner, "/api/v1/devices/"+deviceID+"/settings")
		if r.ReportedVersion != want {
			return fmt.Errorf("reported version %d, want %d", r.ReportedVersion, want)
		}
		return nil
	})
	return r
}

// TestSettingsReachBandAfterCleanReconnect: a clean-session band that was offline while its
// owner changed its settings gets them once it reconnects and subscribes, without asking
// (no settings_get), and its report is what the owner then sees.
func TestSettingsReachBandAfterCleanReconnect(t *testing.T) {
	w := newWorld(t)
	id, secret := w.bindGadget(t, "band")
	band := newGadget(t, id)
	path := "/api/v1/devices/" + id + "/settings"

	if _, err := putSettings(t, w.anna, path, `{"alarm":"07:00","units":"metric"}`, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := putSettings(t, w.anna, path, `{"alarm":"06:30"}`, 1); err != nil {
		t.Fatal(err)
	}
	band.run(w.h.MQTTURL(), secret, true)
	r := waitReported(t, w.anna, id, 2)
	var reported map[string]any
	if err := json.Unmarshal(r.Reported, &reported); err != nil || reported["alarm"] != "06:30" || reported["units"] != "metric" {
		t.Fatalf("reported %s", r.Reported)
	}
	if got := band.received(devices.DocDevice); len(got) != 1 || got[0].Version != 2 {
		t.Fatalf("the band got %+v, want one delta at version 2", got)
	}
}

// TestSettingsReachPersistentSession: a band with a persistent session (clean=false) that
// was offline while its settings changed reconnects: its SUBSCRIBE is granted (nothing was
// queued into the session to collide with its packet ID) and it gets the change; a change
// while it is connected reaches it at once. Three rounds, so a queued message from an
// earlier round would show.
func TestSettingsReachPersistentSession(t *testing.T) {
	w := newWorld(t)
	id, secret := w.bindGadget(t, "band")
	band := newGadget(t, id)
	path := "/api/v1/devices/" + id + "/settings"
	stop := band.run(w.h.MQTTURL(), secret, false) // creates the session and its subscriptions
	stop()
	w.waitOffline(t, id)

	version := int64(0)
	for round := 1; round <= 3; round++ {
		res, err := putSettings(t, w.anna, path, fmt.Sprintf(`{"alarm":"0%d:00"}`, round), version)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		version = res.Version
		stop := band.run(w.h.MQTTURL(), secret, false)
		waitReported(t, w.anna, id, version)
		// Connected: a change goes straight to it.
		res, err = putSettings(t, w.anna, path, fmt.Sprintf(`{"units":"u%d"}`, round), version)
		if err != nil {
			t.Fatalf("round %d online: %v", round, err)
		}
		version = res.Version
		waitReported(t, w.anna, id, version)
		stop()
		w.waitOffline(t, id)
	}
	if s, v := band.model.Settings(); v != version || string(s) != `{"alarm":"03:00","units":"u3"}` {
		t.Fatalf("the band holds %s version %d, want version %d", s, v, version)
	}
}

// TestProfileReachesEveryDeviceOfTheAccount: a profile change reaches every connected device
// of the account (a phone and a band); a scale offline meanwhile gets it when it reconnects
// and reports the version; the owner sees each device's applied version; a device of
// another account never gets it; a stale write is refused.
func TestProfileReachesEveryDeviceOfTheAccount(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	bandID, bandSecret := w.bindGadget(t, "band")
	scaleID, scaleSecret := w.bindGadget(t, "scale")
	band, scale := newGadget(t, bandID), newGadget(t, scaleID)
	band.run(w.h.MQTTURL(), bandSecret, true)
	stopScale := scale.run(w.h.MQTTURL(), scaleSecret, false)
	stopScale() // the scale has a persistent session and is offline now
	w.waitOffline(t, scaleID)
	phone := w.phone(t, w.annaPhone)
	borisPhone := w.connect(t, w.borisPhone.DeviceID, w.borisPhone.Secret)

	res, err := putSettings(t, w.anna, "/api/v1/profile", `{"height_cm":172,"birth_year":1990,"goal_steps":8000}`, 0)
	if err != nil || res.Version != 1 {
		t.Fatalf("PUT profile: %+v %v", res, err)
	}
	res, err = putSettings(t, w.anna, "/api/v1/profile", `{"goal_steps":10000,"birth_year":null}`, 1)
	if err != nil || res.Version != 2 {
		t.Fatalf("PUT profile: %+v %v", res, err)
	}
	// A writer still at version 1 is refused and told the current version.
	if _, err := putSettings(t, w.anna, "/api/v1/profile", `{"height_cm":180}`, 1); apiclient.Code(err) != "stale_version" {
		t.Fatalf("stale profile write: %v", err)
	}

	applied := func() map[string]devices.ProfileDevice {
		out := map[string]devices.ProfileDevice{}
		for _, d := range getSettings(t, w.anna, "/api/v1/profile").Devices {
			out[d.DeviceID] = d
		}
		return out
	}
	apptest.Eventually(t, 10*time.Second, func() error {
		a := applied()
		if a[bandID].AppliedVersion != 2 || a[w.annaPhone.DeviceID].AppliedVersion != 2 {
			return fmt.Errorf("applied versions %+v", a)
		}
		return nil
	})
	if a := applied(); len(a) != 3 || a[scaleID].AppliedVersion != 0 || !a[scaleID].Behind || a[bandID].Behind {
		t.Fatalf("owner's view %+v, want the offline scale behind", a)
	}
	want := `{"goal_steps":10000,"height_cm":172}` // the whole document: birth_year removed
	for name, m := range map[string]*devices.SettingsModel{"band": band.model, "phone": phone.Phone().Settings()} {
		if p, v := m.Profile(); v != 2 || string(p) != want {
			t.Fatalf("the %s holds profile %s version %d, want %s", name, p, v, want)
		}
	}

	// The scale comes back on its persistent session: it gets version 2 and reports it.
	scale.run(w.h.MQTTURL(), scaleSecret, false)
	apptest.Eventually(t, 10*time.Second, func() error {
		if a := applied(); a[scaleID].AppliedVersion != 2 || a[scaleID].Behind {
			return fmt.Errorf("scale %+v", a[scaleID])
		}
		return nil
	})
	if got := scale.received(devices.DocProfile); len(got) != 1 || got[0].Version != 2 {
		t.Fatalf("the scale got %+v, want only version 2", got)
	}
	if p, _ := scale.model.Profile(); string(p) != want {
		t.Fatalf("the scale holds %s", p)
	}

	// Boris's phone: his own profile reaches it, and it is the only one it ever got.
	if _, err := putSettings(t, w.boris, "/api/v1/profile", `{"height_cm":190}`, 0); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		var cmd devices.Command
		select {
		case cmd = <-borisPhone.Commands():
		case <-timeout:
			t.Fatal("Boris's phone never got his profile")
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		if cmd.Type != devices.CmdSettings {
			continue
		}
		var a devices.SettingsArgs
		if err := json.Unmarshal(cmd.Args, &a); err != nil || a.Doc != devices.DocProfile || string(a.Desired) != `{"height_cm":190}` || a.Version != 1 {
			t.Fatalf("Boris's phone got %s", cmd.Args)
		}
		break
	}
	if b := getSettings(t, w.boris, "/api/v1/profile"); len(b.Devices) != 1 || b.Devices[0].DeviceID != w.borisPhone.DeviceID {
		t.Fatalf("Boris's profile view %+v", b.Devices)
	}
}
