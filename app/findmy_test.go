package app_test

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/devices/phonesim"
	"github.com/devicehub/devicehub/hub"
)

const annaContact = "+14155552671" // Anna's partner's number, shown on the locked screen

// phone runs a phonesim phone for the credentials until the test ends.
func (w *world) phone(t *testing.T, creds apiclient.Credentials) *phonesim.Runner {
	t.Helper()
	c := w.connect(t, creds.DeviceID, creds.Secret)
	r := phonesim.Start(phonesim.Options{Client: c})
	t.Cleanup(r.Close)
	return r
}

func issue(t *testing.T, owner *apiclient.Client, deviceID string, req hub.CommandRequest) hub.CommandView {
	t.Helper()
	var out struct {
		Command hub.CommandView `json:"command"`
	}
	if err := owner.Do(testCtx(t), http.MethodPost, "/api/v1/devices/"+deviceID+"/commands", req, &out); err != nil {
		t.Fatalf("issue %s: %v", req.Type, err)
	}
	if out.Command.ID == "" || out.Command.Type != req.Type {
		t.Fatalf("issue %s answered %+v", req.Type, out.Command)
	}
	return out.Command
}

func commandState(t *testing.T, owner *apiclient.Client, deviceID, cmdID string) hub.CommandView {
	t.Helper()
	var c hub.CommandView
	if err := owner.Do(testCtx(t), http.MethodGet, "/api/v1/devices/"+deviceID+"/commands/"+cmdID, nil, &c); err != nil {
		t.Fatalf("command %s: %v", cmdID, err)
	}
	return c
}

func waitState(t *testing.T, owner *apiclient.Client, deviceID, cmdID, want string) hub.CommandView {
	t.Helper()
	var c hub.CommandView
	apptest.Eventually(t, 10*time.Second, func() error {
		c = commandState(t, owner, deviceID, cmdID)
		if c.State != want {
			return fmt.Errorf("command %s (%s) is %s, want %s", cmdID, c.Type, c.State, want)
		}
		return nil
	})
	return c
}

type commandList struct {
	Commands []hub.CommandView `json:"commands"`
	LostMode *hub.LostMode     `json:"lost_mode"`
}

func listCommands(t *testing.T, owner *apiclient.Client, deviceID string) commandList {
	t.Helper()
	var l commandList
	if err := owner.Do(testCtx(t), http.MethodGet, "/api/v1/devices/"+deviceID+"/commands", nil, &l); err != nil {
		t.Fatalf("commands of %s: %v", deviceID, err)
	}
	return l
}

func waitLocked(t *testing.T, r *phonesim.Runner, want bool) {
	t.Helper()
	apptest.Eventually(t, 10*time.Second, func() error {
		if r.Phone().Locked() != want {
			return fmt.Errorf("phone locked = %v, want %v", !want, want)
		}
		return nil
	})
}

func findmyCode(err error) string {
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func TestFindMyLockOnlinePhone(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	phoneID := w.annaPhone.DeviceID
	r := w.phone(t, w.annaPhone)

	lock := issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdLock, Message: "Lost phone, reward!", ContactNumber: "+1 415-555-2671"})
	if lock.State != hub.CommandDelivered || lock.DeliveredAt == nil {
		t.Fatalf("lock to an online phone: %+v, want delivered", lock)
	}
	waitLocked(t, r, true)
	acked := waitState(t, w.anna, phoneID, lock.ID, hub.CommandAcknowledged)
	if acked.AckedAt == nil || acked.DeliveredAt == nil {
		t.Fatalf("acknowledged command without timestamps: %+v", acked)
	}
	lm := r.Phone().LostMode()
	if lm.Message != "Lost phone, reward!" || lm.ContactNumber != annaContact || lm.ReportInterval != 5*time.Minute {
		t.Fatalf("phone's lost mode %+v", lm)
	}
	if l := listCommands(t, w.anna, phoneID); l.LostMode == nil || l.LostMode.ContactNumber != annaContact {
		t.Fatalf("owner's view of lost mode: %+v", l.LostMode)
	}

	// Calls: the contact number only.
	if err := r.Phone().Dial(annaContact); err != nil {
		t.Fatalf("calling the contact number: %v", err)
	}
	if err := r.Phone().Dial("+12025550143"); devices.RefusalReason(err) != devices.ReasonLostMode {
		t.Fatalf("calling another number: %v, want a lost_mode refusal", err)
	}

	// Signing out: the phone refuses, and the hub refuses a phone that asks anyway, even
	// with the right password, and the owner's HTTP unbind too.
	if err := r.SignOut(ctx, w.annaPassword); !errors.Is(err, phonesim.ErrLocked) {
		t.Fatalf("sign out while locked: %v", err)
	}
	if err := r.SignOutAnyway(ctx, w.annaPassword); findmyCode(err) != hub.EForbidden {
		t.Fatalf("unbind request from the locked phone: %v, want forbidden", err)
	}
	if err := w.anna.Unbind(ctx, phoneID, w.annaPassword); apiclient.Code(err) != hub.EForbidden {
		t.Fatalf("HTTP unbind of a locked phone: %v, want forbidden", err)
	}

	// The lock made the phone report where it is; locate answers with it and asks again.
	var loc hub.LocationView
	apptest.Eventually(t, 10*time.Second, func() error {
		return w.anna.Do(ctx, http.MethodGet, "/api/v1/devices/"+phoneID+"/location", nil, &loc)
	})
	if loc.Lat != 52.52 || loc.Lon != 13.405 || loc.AccuracyM != 12 || loc.At.IsZero() {
		t.Fatalf("location %+v", loc)
	}
	var located struct {
		Command  hub.CommandView   `json:"command"`
		Location *hub.LocationView `json:"location"`
	}
	if err := w.anna.Do(ctx, http.MethodPost, "/api/v1/devices/"+phoneID+"/commands", hub.CommandRequest{Type: devices.CmdLocate}, &located); err != nil {
		t.Fatal(err)
	}
	if located.Location == nil || located.Location.Lat != 52.52 {
		t.Fatalf("locate answered %+v", located)
	}
	waitState(t, w.anna, phoneID, located.Command.ID, hub.CommandAcknowledged)

	// Unlocking on the phone: a wrong password is refused, the right one works.
	if err := r.Unlock(ctx, "not-annas-password"); findmyCode(err) != hub.EUnauthorized {
		t.Fatalf("unlock with a wrong password: %v, want unauthorized", err)
	}
	if !r.Phone().Locked() {
		t.Fatal("a wrong password unlocked the phone")
	}
	if err := r.Unlock(ctx, w.annaPassword); err != nil {
		t.Fatalf("unlock with the password: %v", err)
	}
	if r.Phone().Locked() {
		t.Fatal("still locked")
	}
	l := listCommands(t, w.anna, phoneID)
	if l.LostMode != nil {
		t.Fatalf("hub still has lost mode: %+v", l.LostMode)
	}
	// The hub sent the phone an unlock command, issued by the phone itself.
	if len(l.Commands) == 0 || l.Commands[0].Type != devices.CmdUnlock || l.Commands[0].IssuedBy != phoneID {
		t.Fatalf("newest command %+v, want the phone's unlock", l.Commands)
	}
	waitState(t, w.anna, phoneID, l.Commands[0].ID, hub.CommandAcknowledged)
	if err := r.Phone().Dial("+12025550143"); err != nil {
		t.Fatalf("unlocked phone refused a call: %v", err)
	}

	// Unlocked, the phone may be signed out. (From HTTP: a phone that unbinds itself is
	// disconnected before its answer reaches it.)
	if err := r.Phone().SignOut(); err != nil {
		t.Fatalf("unlocked phone refuses to sign out: %v", err)
	}
	if err := w.anna.Unbind(ctx, phoneID, w.annaPassword); err != nil {
		t.Fatalf("unbind after unlocking: %v", err)
	}
}

func TestFindMyUnlockThrottled(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	phoneID := w.annaPhone.DeviceID
	r := w.phone(t, w.annaPhone)
	issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdLock, ContactNumber: annaContact})
	waitLocked(t, r, true)

	throttled := false
	for i := range 10 {
		err := r.Unlock(ctx, fmt.Sprintf("guess-%d", i))
		if code := findmyCode(err); code == hub.ERateLimited {
			throttled = true
			break
		} else if code != hub.EUnauthorized {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if !throttled {
		t.Fatal("10 wrong passwords and no throttling")
	}
	// While throttled even the right password waits: guessing gains nothing.
	if err := r.Unlock(ctx, w.annaPassword); findmyCode(err) != hub.ERateLimited {
		t.Fatalf("right password while throttled: %v, want rate_limited", err)
	}
	if !r.Phone().Locked() || listCommands(t, w.anna, phoneID).LostMode == nil {
		t.Fatal("lost mode ended while throttled")
	}
	// The owner can still unlock it from the app.
	unlock := issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdUnlock})
	waitLocked(t, r, false)
	waitState(t, w.anna, phoneID, unlock.ID, hub.CommandAcknowledged)
}

func TestFindMyLockOfflinePhone(t *testing.T) {
	w := newWorld(t)
	phoneID := w.annaPhone.DeviceID
	lock := issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdLock, Message: "call me", ContactNumber: annaContact})
	ring := issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdRing})
	for _, c := range []hub.CommandView{lock, ring} {
		if c.State != hub.CommandQueued {
			t.Fatalf("command to an offline phone: %+v, want queued", c)
		}
	}
	// The hub refuses to unbind it already: lost mode starts when the owner asks.
	if err := w.anna.Unbind(testCtx(t), phoneID, w.annaPassword); apiclient.Code(err) != hub.EForbidden {
		t.Fatalf("unbind of a phone locked while offline: %v", err)
	}

	r := w.phone(t, w.annaPhone)
	waitLocked(t, r, true)
	waitState(t, w.anna, phoneID, lock.ID, hub.CommandAcknowledged)
	waitState(t, w.anna, phoneID, ring.ID, hub.CommandAcknowledged)
	if _, rings, _ := r.Phone().Counts(); rings != 1 {
		t.Fatalf("rang %d times", rings)
	}
}

func TestFindMyCommandsSurviveRestart(t *testing.T) {
	w := newWorld(t)
	phoneID := w.annaPhone.DeviceID
	lock := issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdLock, ContactNumber: annaContact})

	w.h.Stop(t)
	w.h = apptest.StartIn(t, w.h.Dir, nil)
	w.anna.Base = w.h.URL()

	if c := commandState(t, w.anna, phoneID, lock.ID); c.State != hub.CommandQueued {
		t.Fatalf("after restart: %+v, want queued", c)
	}
	r := w.phone(t, w.annaPhone)
	waitLocked(t, r, true)
	waitState(t, w.anna, phoneID, lock.ID, hub.CommandAcknowledged)
}

func TestFindMyWipeKeepsBinding(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	phoneID := w.annaPhone.DeviceID
	r := w.phone(t, w.annaPhone)
	r.Phone().Put("photos", "holiday")

	issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdLock, ContactNumber: annaContact})
	wipe := issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdWipe})
	waitState(t, w.anna, phoneID, wipe.ID, hub.CommandAcknowledged)
	if _, ok := r.Phone().Get("photos"); ok {
		t.Fatal("wipe left the owner's data")
	}

	ds, err := w.anna.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bound := false
	for _, d := range ds {
		bound = bound || (d.ID == phoneID && d.AccountID == w.annaID)
	}
	if !bound {
		t.Fatalf("wiped phone no longer bound: %+v", ds)
	}

	// Factory reset: the phone lost its secret. A thief's account cannot have it...
	r.Close()
	if _, err := w.boris.RegisterDevice(ctx, "phone", "mine now", "imei-anna"); apiclient.Code(err) != hub.EDeviceLocked {
		t.Fatalf("thief registering the wiped phone: %v, want device_locked", err)
	}
	// ...while Anna signs in on it again and gets the same device, still in lost mode.
	again, err := w.anna.RegisterDevice(ctx, "phone", "Anna's phone", "imei-anna")
	if err != nil || again.DeviceID != phoneID {
		t.Fatalf("owner registering her reset phone: %+v, %v", again, err)
	}
	if l := listCommands(t, w.anna, phoneID); l.LostMode == nil {
		t.Fatal("a reset ended lost mode")
	}
}

func TestFindMyCommandsAcrossAccounts(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	annaPhoneID := w.annaPhone.DeviceID
	pc := w.connect(t, annaPhoneID, w.annaPhone.Secret)
	r := phonesim.Start(phonesim.Options{Client: pc})
	t.Cleanup(r.Close)

	// Boris cannot command, list, or locate Anna's phone over HTTP: it does not exist for him.
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/commands"}, {http.MethodGet, "/commands"}, {http.MethodGet, "/location"},
	} {
		var body any
		if c.method == http.MethodPost {
			body = hub.CommandRequest{Type: devices.CmdWipe}
		}
		if err := w.boris.Do(ctx, c.method, "/api/v1/devices/"+annaPhoneID+c.path, body, nil); apiclient.Code(err) != hub.ENotFound {
			t.Fatalf("Boris %s %s: %v, want not_found", c.method, c.path, err)
		}
	}
	// Nor from his phone over MQTT.
	boris := w.connect(t, w.borisPhone.DeviceID, w.borisPhone.Secret)
	if _, err := boris.Request(ctx, devices.OpCommand, devices.CommandArgs{DeviceID: annaPhoneID, Type: devices.CmdWipe}); findmyCode(err) != hub.ENotFound {
		t.Fatalf("Boris's phone commanding Anna's: %v, want not_found", err)
	}

	// Anna's tablet, another controller of her account, may.
	tabCreds, err := w.anna.RegisterDevice(ctx, "tablet", "Anna's tablet", "imei-anna-tab")
	if err != nil {
		t.Fatal(err)
	}
	tablet := w.connect(t, tabCreds.DeviceID, tabCreds.Secret)
	if _, err := tablet.Request(ctx, devices.OpCommand, devices.CommandArgs{DeviceID: tabCreds.DeviceID, Type: devices.CmdRing}); findmyCode(err) != hub.EForbidden {
		t.Fatalf("tablet commanding itself: %v, want forbidden", err)
	}
	if _, err := tablet.Request(ctx, devices.OpCommand, devices.CommandArgs{DeviceID: annaPhoneID, Type: devices.CmdLock, ContactNumber: "12"}); findmyCode(err) != hub.EInvalid {
		t.Fatalf("lock with a bad contact number: %v, want invalid", err)
	}
	if _, err := tablet.Request(ctx, devices.OpCommand, devices.CommandArgs{DeviceID: annaPhoneID, Type: devices.CmdLock, ContactNumber: annaContact}); err != nil {
		t.Fatalf("tablet locking Anna's phone: %v", err)
	}
	waitLocked(t, r, true)
	l := listCommands(t, w.anna, annaPhoneID)
	if len(l.Commands) != 1 || l.Commands[0].IssuedBy != tabCreds.DeviceID {
		t.Fatalf("commands %+v", l.Commands)
	}
	// The locked phone cannot command anything (not even to unlock itself through the tablet).
	if _, err := pc.Request(ctx, devices.OpCommand, devices.CommandArgs{DeviceID: tabCreds.DeviceID, Type: devices.CmdWipe}); findmyCode(err) != hub.EForbidden {
		t.Fatalf("locked phone commanding the tablet: %v, want forbidden", err)
	}
	// Boris does not see Anna's commands, and command IDs of her phone mean nothing to him.
	if err := w.boris.Do(ctx, http.MethodGet, "/api/v1/devices/"+annaPhoneID+"/commands/"+l.Commands[0].ID, nil, nil); apiclient.Code(err) != hub.ENotFound {
		t.Fatalf("Boris reading Anna's command: %v", err)
	}
}

func TestFindMyLostPhoneReportsLocation(t *testing.T) {
	w := newWorld(t)
	// Restart on the same data with a short reporting interval.
	w.h.Stop(t)
	w.h = apptest.StartIn(t, w.h.Dir, func(c *config.Config) { c.LostMode.LocationInterval = time.Second })
	w.anna.Base = w.h.URL()
	phoneID := w.annaPhone.DeviceID

	var fixes atomic.Int64 // the phone moves a degree north with every fix
	c := w.connect(t, phoneID, w.annaPhone.Secret)
	r := phonesim.Start(phonesim.Options{Client: c, Position: func() devices.LocationSample {
		return devices.LocationSample{Lat: float64(fixes.Add(1)), Lon: 2, AccuracyM: 5}
	}})
	t.Cleanup(r.Close)

	issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdLock, ContactNumber: annaContact})
	waitLocked(t, r, true)
	if got := r.Phone().ReportInterval(); got != time.Second {
		t.Fatalf("report interval %v", got)
	}
	// One fix on lock, then one per interval without being asked.
	apptest.Eventually(t, 15*time.Second, func() error {
		var loc hub.LocationView
		if err := w.anna.Do(testCtx(t), http.MethodGet, "/api/v1/devices/"+phoneID+"/location", nil, &loc); err != nil {
			return err
		}
		if loc.Lat < 3 {
			return fmt.Errorf("newest fix is number %v, want at least 3", loc.Lat)
		}
		return nil
	})
	// Unlocked, the phone stops reporting on its own.
	issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdUnlock})
	waitLocked(t, r, false)
	if r.Phone().ReportInterval() != 0 {
		t.Fatal("unlocked phone still has a report interval")
	}
}

func TestFindMyLockReachesPersistentSession(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	phoneID := w.annaPhone.DeviceID
	opts := client.Options{Broker: w.h.MQTTURL(), DeviceID: phoneID, Secret: w.annaPhone.Secret, CleanSession: false}
	first, err := client.Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	first.Close() // the broker keeps its session and subscriptions
	apptest.Eventually(t, 10*time.Second, func() error {
		ds, err := w.anna.Devices(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.ID == phoneID && d.Online {
				return errors.New("phone still online")
			}
		}
		return nil
	})

	lock := issue(t, w.anna, phoneID, hub.CommandRequest{Type: devices.CmdLock, ContactNumber: annaContact})
	if lock.State != hub.CommandQueued {
		t.Fatalf("lock to an offline phone: %s", lock.State)
	}
	again, err := client.Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Close)
	var applied, repeats atomic.Int64
	r := phonesim.Start(phonesim.Options{Client: again, OnCommand: func(cmd devices.Command, out devices.CommandOutcome) {
		if cmd.ID == lock.ID {
			if out.Repeat {
				repeats.Add(1)
			} else {
				applied.Add(1)
			}
		}
	}})
	t.Cleanup(r.Close)
	waitLocked(t, r, true)
	waitState(t, w.anna, phoneID, lock.ID, hub.CommandAcknowledged)
	// The runner reports a command after acknowledging it, so wait for the report.
	apptest.Eventually(t, 10*time.Second, func() error {
		if applied.Load() == 0 {
			return errors.New("lock not reported applied yet")
		}
		return nil
	})
	// However often it arrives (a resend on every subscribe), the phone applies it once.
	if applied.Load() != 1 {
		t.Fatalf("lock applied %d times (%d repeats)", applied.Load(), repeats.Load())
	}
}
