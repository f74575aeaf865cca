package hub_test

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/store/sqlite"
)

const settingsPassword = "correct horse battery"

// sent is one command the hub published, with the device it went to.
type sent struct {
	to  string
	cmd devices.Command
}

// topicRecorder is a transport that keeps what the hub publishes and to whom.
type topicRecorder struct {
	mu   sync.Mutex
	sent []sent
}

func (r *topicRecorder) Publish(_ context.Context, topic string, payload []byte, _ byte) error {
	var c devices.Command
	if err := json.Unmarshal(payload, &c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sent{to: strings.TrimSuffix(strings.TrimPrefix(topic, "devices/"), "/commands"), cmd: c})
	return nil
}

func (r *topicRecorder) Drop(string) {}

// settings takes the "settings" commands published so far.
func (r *topicRecorder) settings(t *testing.T) map[string][]devices.SettingsArgs {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]devices.SettingsArgs{}
	for _, s := range r.sent {
		if s.cmd.Type != devices.CmdSettings {
			continue
		}
		var a devices.SettingsArgs
		if err := json.Unmarshal(s.cmd.Args, &a); err != nil || a.Validate() != nil {
			t.Fatalf("settings command %s: %v", s.cmd.Args, err)
		}
		out[s.to] = append(out[s.to], a)
	}
	r.sent = nil
	return out
}

// settingsWorld is a hub with settings on a real SQLite file and a recording transport.
type settingsWorld struct {
	h   *hub.Hub
	db  *sqlite.DB
	clk *clock
	rec *topicRecorder
}

func newSettingsWorld(t *testing.T) *settingsWorld {
	t.Helper()
	db := openDB(t)
	o, clk := baseOptions(db)
	o.Accounts, o.Sync = hub.AccountOptions{ChallengeBase: 1000}, openSyncLog(t, db)
	h := hub.New(o)
	rec := &topicRecorder{}
	h.AttachTransport(rec, rec)
	return &settingsWorld{h: h, db: db, clk: clk, rec: rec}
}

// signUp registers and confirms an account and returns its ID.
func (w *settingsWorld) signUp(t *testing.T, who string) string {
	t.Helper()
	ctx := context.Background()
	req := hub.AccountRequest{Identifier: who, Password: settingsPassword, IP: "10.0.0.1", Challenge: solveFor(t, w.h, who)}
	if _, err := w.h.Register(ctx, req); err != nil {
		t.Fatal(err)
	}
	msgs, err := w.db.ListOutbox(ctx, who, 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox: %v %v", msgs, err)
	}
	req.Code = regexp.MustCompile(`code is (\d{6})`).FindStringSubmatch(msgs[0].Body)[1]
	if _, err := w.h.ConfirmCode(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Challenge = solveFor(t, w.h, who)
	_, s, err := w.h.Login(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return s.AccountID
}

// phone registers a phone in the account and returns its identity.
func (w *settingsWorld) phone(t *testing.T, accountID, hw string) devices.Identity {
	t.Helper()
	creds, err := w.h.RegisterController(context.Background(), accountID, devices.Phone, "phone "+hw, hw)
	if err != nil {
		t.Fatal(err)
	}
	return devices.Identity{DeviceID: creds.DeviceID, AccountID: accountID, Type: devices.Phone}
}

// bindGadget binds an unbound gadget to the account and returns its bound identity.
func (w *settingsWorld) bindGadget(t *testing.T, g devices.Identity, accountID string) devices.Identity {
	t.Helper()
	ctx := context.Background()
	bc, err := w.h.RequestBindCode(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.h.Bind(ctx, accountID, g.DeviceID, bc.Code, "test"); err != nil {
		t.Fatal(err)
	}
	w.rec.settings(t) // drop the "bound" event
	return devices.Identity{DeviceID: g.DeviceID, AccountID: accountID, Type: g.Type}
}

func (w *settingsWorld) online(ids ...devices.Identity) {
	for _, id := range ids {
		w.h.DeviceOnline(context.Background(), id.DeviceID, true)
	}
}

func (w *settingsWorld) offline(ids ...devices.Identity) {
	for _, id := range ids {
		w.h.DeviceOnline(context.Background(), id.DeviceID, false)
	}
}

func desiredOf(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("desired %s: %v", raw, err)
	}
	return m
}

// TestSettingsWaitForSubscribe: a change is published only to a connected device; one made
// while the device was offline comes as the delta when it subscribes, until it reports it.
func TestSettingsWaitForSubscribe(t *testing.T) {
	w := newSettingsWorld(t)
	ctx := context.Background()
	acc := w.signUp(t, "sam@example.com")
	band := w.bindGadget(t, gadget(t, w.h), acc)

	res, err := w.h.SetSettings(ctx, acc, band.DeviceID, json.RawMessage(`{"alarm":"07:00","units":"metric"}`), 0)
	if err != nil || res.Version != 1 {
		t.Fatalf("set: %+v %v", res, err)
	}
	// Offline: nothing is published (a persistent session would queue it where it collides
	// with the device's next SUBSCRIBE).
	if got := w.rec.settings(t); len(got) != 0 {
		t.Fatalf("published to an offline band: %+v", got)
	}
	w.online(band)
	if _, err := w.h.SetSettings(ctx, acc, band.DeviceID, json.RawMessage(`{"units":"imperial"}`), 1); err != nil {
		t.Fatal(err)
	}
	got := w.rec.settings(t)[band.DeviceID]
	if len(got) != 1 || got[0].Doc != devices.DocDevice || got[0].Version != 2 || string(got[0].Desired) != `{"units":"imperial"}` {
		t.Fatalf("online change: %+v", got)
	}
	// The band applied only the first setting when it dropped off.
	if err := w.h.ReportSettings(ctx, band, json.RawMessage(`{"alarm":"07:00","units":"metric"}`), 1); err != nil {
		t.Fatal(err)
	}
	w.offline(band)
	if _, err := w.h.SetSettings(ctx, acc, band.DeviceID, json.RawMessage(`{"alarm":"06:30"}`), 2); err != nil {
		t.Fatal(err)
	}
	if got := w.rec.settings(t); len(got) != 0 {
		t.Fatalf("published to an offline band: %+v", got)
	}
	w.online(band)
	w.h.SettingsOnConnect(ctx, band)
	got = w.rec.settings(t)[band.DeviceID]
	if len(got) != 1 || got[0].Version != 3 {
		t.Fatalf("on subscribe: %+v", got)
	}
	if d := desiredOf(t, got[0].Desired); len(d) != 2 || d["alarm"] != "06:30" || d["units"] != "imperial" {
		t.Fatalf("delta %s, want alarm and units", got[0].Desired)
	}
	if err := w.h.ReportSettings(ctx, band, json.RawMessage(`{"alarm":"06:30","units":"imperial"}`), 3); err != nil {
		t.Fatal(err)
	}
	w.h.SettingsOnConnect(ctx, band)
	if got := w.rec.settings(t); len(got) != 0 {
		t.Fatalf("sent again after the report: %+v", got)
	}
}

// TestProfileSyncedToAccountDevices: a profile change reaches the account's connected
// devices (never another account's), whole; an offline device gets it when it subscribes
// and reports the version; the owner sees who is behind; stale writes are refused.
func TestProfileSyncedToAccountDevices(t *testing.T) {
	w := newSettingsWorld(t)
	ctx := context.Background()
	anna := w.signUp(t, "anna@example.com")
	boris := w.signUp(t, "boris@example.com")
	annaPhone := w.phone(t, anna, "imei-anna")
	band := w.bindGadget(t, gadget(t, w.h), anna)
	scale := w.bindGadget(t, gadget(t, w.h), anna)
	borisPhone := w.phone(t, boris, "imei-boris")
	borisBand := w.bindGadget(t, gadget(t, w.h), boris)
	w.online(annaPhone, band, borisPhone, borisBand) // Anna's scale is offline

	res, err := w.h.SetSettings(ctx, anna, hub.ProfileID, json.RawMessage(`{"height_cm":172,"birth_year":1990}`), 0)
	if err != nil || res.Version != 1 {
		t.Fatalf("set profile: %+v %v", res, err)
	}
	res, err = w.h.SetSettings(ctx, anna, hub.ProfileID, json.RawMessage(`{"goal_steps":10000,"birth_year":null}`), 1)
	if err != nil || res.Version != 2 {
		t.Fatalf("set profile: %+v %v", res, err)
	}
	got := w.rec.settings(t)
	if len(got) != 2 || len(got[annaPhone.DeviceID]) != 2 || len(got[band.DeviceID]) != 2 {
		t.Fatalf("profile sent to %v, want Anna's phone and band twice each", keys(got))
	}
	for _, id := range []string{annaPhone.DeviceID, band.DeviceID} {
		last := got[id][1]
		// The whole document, not the patch: birth_year is gone, height_cm is still there.
		if d := desiredOf(t, last.Desired); last.Doc != devices.DocProfile || last.Version != 2 || len(d) != 2 || d["height_cm"] != 172.0 || d["goal_steps"] != 10000.0 {
			t.Fatalf("%s got %+v %s", id, last, last.Desired)
		}
	}
	// A writer still at version 1 is refused with the current version.
	_, err = w.h.SetSettings(ctx, anna, hub.ProfileID, json.RawMessage(`{"height_cm":180}`), 1)
	if e := hub.AsError(err); e == nil || e.Code != hub.EStale || !strings.Contains(e.Message, "version is 2") || e.CurrentVersion == nil || *e.CurrentVersion != 2 {
		t.Fatalf("stale profile write: %v", err)
	}
	if got := w.rec.settings(t); len(got) != 0 {
		t.Fatalf("a refused write sent %+v", got)
	}

	if err := w.h.ReportProfile(ctx, band, 2); err != nil {
		t.Fatal(err)
	}
	if err := w.h.ReportProfile(ctx, band, 3); hub.ErrorCode(err) != hub.EInvalid {
		t.Fatalf("report of a version the profile never had: %v", err)
	}
	// The owner's view: the band is current; the phone and the offline scale are behind.
	view, err := w.h.GetSettings(ctx, anna, hub.ProfileID)
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]devices.ProfileDevice{}
	for _, d := range view.Devices {
		applied[d.DeviceID] = d
	}
	if len(view.Devices) != 3 || applied[band.DeviceID].AppliedVersion != 2 || applied[band.DeviceID].Behind ||
		!applied[scale.DeviceID].Behind || !applied[annaPhone.DeviceID].Behind {
		t.Fatalf("profile view %+v", view.Devices)
	}

	// The scale comes online and subscribes: it gets the current profile, and after its
	// report nothing more. Boris's devices never get Anna's profile.
	w.online(scale)
	for _, id := range []devices.Identity{scale, borisPhone, borisBand, band} {
		w.h.SettingsOnConnect(ctx, id)
	}
	got = w.rec.settings(t)
	if len(got) != 1 || len(got[scale.DeviceID]) != 1 || got[scale.DeviceID][0].Version != 2 || got[scale.DeviceID][0].Doc != devices.DocProfile {
		t.Fatalf("on subscribe: %+v", got)
	}
	if err := w.h.ReportProfile(ctx, scale, 2); err != nil {
		t.Fatal(err)
	}
	w.h.SettingsOnConnect(ctx, scale)
	if got := w.rec.settings(t); len(got) != 0 {
		t.Fatalf("sent again after the report: %+v", got)
	}

	// Through requests: a gadget reads the profile without the account's device list, a
	// phone with it, and a profile report carries no document.
	raw, err := w.h.HandleRequest(ctx, band, devices.Request{ID: "r1", Op: devices.OpSettingsGet, Args: json.RawMessage(`{"device_id":"profile"}`)})
	if r, ok := raw.(devices.SettingsResult); err != nil || !ok || r.Version != 2 || r.Devices != nil {
		t.Fatalf("band reads the profile: %+v %v", raw, err)
	}
	raw, err = w.h.HandleRequest(ctx, annaPhone, devices.Request{ID: "r2", Op: devices.OpSettingsGet, Args: json.RawMessage(`{"device_id":"profile"}`)})
	if r, ok := raw.(devices.SettingsResult); err != nil || !ok || len(r.Devices) != 3 {
		t.Fatalf("phone reads the profile: %+v %v", raw, err)
	}
	_, err = w.h.HandleRequest(ctx, annaPhone, devices.Request{ID: "r3", Op: devices.OpSettingsReport, Args: json.RawMessage(`{"doc":"profile","reported":{"height_cm":172},"version":2}`)})
	if e := hub.AsError(err); e == nil || e.Code != hub.EInvalid || e.Field != "args.reported" {
		t.Fatalf("profile report with a document: %v", err)
	}
	if _, err := w.h.HandleRequest(ctx, annaPhone, devices.Request{ID: "r4", Op: devices.OpSettingsReport, Args: json.RawMessage(`{"doc":"profile","version":2}`)}); err != nil {
		t.Fatal(err)
	}
	if v, err := w.db.ProfileAppliedBy(ctx, annaPhone.DeviceID, anna); err != nil || v != 2 {
		t.Fatalf("phone applied %d %v", v, err)
	}

	// A report counts for its binding only: unbound and bound again, the band is behind.
	if err := w.h.Unbind(ctx, anna, band.DeviceID, settingsPassword, "test"); err != nil {
		t.Fatal(err)
	}
	w.clk.Advance(time.Second)
	band = w.bindGadget(t, devices.Identity{DeviceID: band.DeviceID, Type: devices.Band}, anna)
	if v, err := w.db.ProfileAppliedBy(ctx, band.DeviceID, anna); err != nil || v != 0 {
		t.Fatalf("after binding again the band applied %d %v, want 0", v, err)
	}
	w.h.SettingsOnConnect(ctx, band)
	if got := w.rec.settings(t)[band.DeviceID]; len(got) != 1 || got[0].Version != 2 {
		t.Fatalf("band bound again got %+v", got)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSettingsDeltaIsAMergePatch: a device that was away while the owner changed one nested
// value and removed a setting gets exactly that on subscribe: the nested change alone, and
// null for the removed key, so applying the patch leaves it with what the owner wants.
func TestSettingsDeltaIsAMergePatch(t *testing.T) {
	w := newSettingsWorld(t)
	ctx := context.Background()
	acc := w.signUp(t, "kim@example.com")
	band := w.bindGadget(t, gadget(t, w.h), acc)
	first := `{"alarm":"07:00","display":{"steps":true,"clock":"24h"},"units":"metric"}`
	if _, err := w.h.SetSettings(ctx, acc, band.DeviceID, json.RawMessage(first), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.h.ReportSettings(ctx, band, json.RawMessage(first), 1); err != nil {
		t.Fatal(err)
	}
	// Offline: the owner switches the clock to 12h and removes the alarm.
	if _, err := w.h.SetSettings(ctx, acc, band.DeviceID, json.RawMessage(`{"display":{"clock":"12h"},"alarm":null}`), 1); err != nil {
		t.Fatal(err)
	}
	w.online(band)
	w.h.SettingsOnConnect(ctx, band)
	got := w.rec.settings(t)[band.DeviceID]
	if len(got) != 1 {
		t.Fatalf("on subscribe: %+v", got)
	}
	var delta map[string]any
	if err := json.Unmarshal(got[0].Desired, &delta); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"alarm": nil, "display": map[string]any{"clock": "12h"}}
	if !reflect.DeepEqual(delta, want) {
		t.Fatalf("delta %s, want {\"alarm\":null,\"display\":{\"clock\":\"12h\"}}", got[0].Desired)
	}
	// Applied to what the band had, it gives the owner's settings.
	after, err := devices.MergePatch(json.RawMessage(first), got[0].Desired)
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.h.GetSettings(ctx, acc, band.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(desiredOf(t, after), desiredOf(t, res.Desired)) {
		t.Fatalf("band would have %s, owner wants %s", after, res.Desired)
	}
}

// TestReportAheadOfDesiredRefused: a device cannot report a settings version the hub never
// had; if it could, it would look ahead of the owner's settings and never get them again.
func TestReportAheadOfDesiredRefused(t *testing.T) {
	w := newSettingsWorld(t)
	ctx := context.Background()
	acc := w.signUp(t, "lee@example.com")
	band := w.bindGadget(t, gadget(t, w.h), acc)
	if _, err := w.h.SetSettings(ctx, acc, band.DeviceID, json.RawMessage(`{"alarm":"07:00"}`), 0); err != nil {
		t.Fatal(err)
	}
	err := w.h.ReportSettings(ctx, band, json.RawMessage(`{"alarm":"09:00"}`), 99)
	if hub.ErrorCode(err) != hub.EInvalid || !strings.Contains(err.Error(), "current version is 1") {
		t.Fatalf("report of version 99: %v, want invalid naming version 1", err)
	}
	w.online(band)
	w.h.SettingsOnConnect(ctx, band)
	if got := w.rec.settings(t)[band.DeviceID]; len(got) != 1 || got[0].Version != 1 {
		t.Fatalf("on subscribe after the refused report: %+v, want version 1 again", got)
	}
}
