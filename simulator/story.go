package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/devices/phonesim"
	"github.com/devicehub/devicehub/hub"
)

// quiet is how long a step listens for something that must not arrive, after it has seen
// the traffic that would have carried it.
const quiet = 500 * time.Millisecond

// story is the scenario's world: Anna and Boris, their sessions and devices.
type story struct {
	t   Target
	log *slog.Logger
	api *apiclient.Client

	annaEmail, annaPassword, annaOldPassword string
	borisNumber, borisPassword               string
	annaContact                              string
	anna, boris                              *apiclient.Client // signed in
	annaID, borisID                          string

	annaPhone, borisPhone *device
	band, scale           *device
	annaInbox             *inbox
	lastAcked             int64 // highest sync cursor Anna's phone acknowledged
}

func newStory(t Target, log *slog.Logger) *story {
	// Fresh identifiers each run, so the story can be played again against the same hub.
	run := strings.ToLower(hub.RandomToken(5))
	return &story{
		t: t, log: log, api: t.API(),
		annaEmail:     "anna+" + run + "@example.com",
		annaPassword:  "anna-likes-long-walks-" + run,
		borisNumber:   fmt.Sprintf("+1415555%04d", randInt(10000)),
		borisPassword: "boris-rides-a-bike-" + run,
		annaContact:   "+1 (415) 555-0123",
	}
}

func (s *story) close() {
	for _, d := range []*device{s.annaPhone, s.borisPhone, s.band, s.scale} {
		if d != nil {
			d.disconnect()
		}
	}
}

// 1. Anna registers by email, solves the challenge, confirms by code from the outbox.
func (s *story) registerEmail(ctx context.Context) (string, error) {
	if err := s.api.Register(ctx, s.annaEmail, s.annaPassword); err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	code, err := s.api.LatestCode(ctx, s.annaEmail, "confirm")
	if err != nil {
		return "", err
	}
	if err := s.api.Confirm(ctx, s.annaEmail, code); err != nil {
		return "", fmt.Errorf("confirm: %w", err)
	}
	return s.annaEmail + " confirmed with the emailed code", nil
}

// 2. Boris registers by phone number and confirms by SMS code.
func (s *story) registerPhone(ctx context.Context) (string, error) {
	if err := s.api.Register(ctx, s.borisNumber, s.borisPassword); err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	code, err := s.api.LatestCode(ctx, s.borisNumber, "")
	if err != nil {
		return "", err
	}
	if err := s.api.Confirm(ctx, s.borisNumber, code); err != nil {
		return "", fmt.Errorf("confirm: %w", err)
	}
	return s.borisNumber + " confirmed with the SMS code", nil
}

// 3. Both sign in.
func (s *story) login(ctx context.Context) (string, error) {
	la, err := s.api.Login(ctx, s.annaEmail, s.annaPassword)
	if err != nil {
		return "", fmt.Errorf("anna: %w", err)
	}
	lb, err := s.api.Login(ctx, s.borisNumber, s.borisPassword)
	if err != nil {
		return "", fmt.Errorf("boris: %w", err)
	}
	s.anna, s.annaID = s.api.WithToken(la.Token), la.AccountID
	s.boris, s.borisID = s.api.WithToken(lb.Token), lb.AccountID
	if _, err := s.anna.Devices(ctx); err != nil {
		return "", fmt.Errorf("anna's session: %w", err)
	}
	return "anna " + s.annaID + ", boris " + s.borisID, nil
}

// 4. Anna forgets her password, resets it by code, old sessions stop working.
func (s *story) passwordReset(ctx context.Context) (string, error) {
	old := s.anna
	if err := s.api.Forgot(ctx, s.annaEmail); err != nil {
		return "", fmt.Errorf("forgot: %w", err)
	}
	code, err := s.api.LatestCode(ctx, s.annaEmail, "reset")
	if err != nil {
		return "", err
	}
	s.annaOldPassword, s.annaPassword = s.annaPassword, s.annaPassword+"-new"
	if err := s.api.Reset(ctx, s.annaEmail, code, s.annaPassword); err != nil {
		return "", fmt.Errorf("reset: %w", err)
	}
	if _, err := old.Devices(ctx); apiclient.Code(err) != hub.EUnauthorized {
		return "", fmt.Errorf("the session from before the reset still works (answer: %v)", err)
	}
	if _, err := s.api.Login(ctx, s.annaEmail, s.annaOldPassword); apiclient.Code(err) != hub.EUnauthorized {
		return "", fmt.Errorf("the old password still signs in (answer: %v)", err)
	}
	la, err := s.api.Login(ctx, s.annaEmail, s.annaPassword)
	if err != nil {
		return "", fmt.Errorf("login with the new password: %w", err)
	}
	s.anna = s.api.WithToken(la.Token)
	return "old session and old password refused; new password signs in", nil
}

// 5. Anna signs in on her phone: it is registered and bound.
func (s *story) bindPhone(ctx context.Context) (string, error) {
	cr, err := s.anna.RegisterDevice(ctx, "phone", "Anna's phone", "imei-anna-"+s.annaID)
	if err != nil {
		return "", fmt.Errorf("register phone: %w", err)
	}
	if cr.AccountID != s.annaID {
		return "", fmt.Errorf("phone registered to %q, want %q", cr.AccountID, s.annaID)
	}
	p := newDevice(cr.DeviceID, devices.Phone, s.log)
	p.secret = cr.Secret
	if err := p.connect(ctx, s.t, p.secret, true); err != nil {
		return "", fmt.Errorf("phone connect: %w", err)
	}
	s.annaPhone = p
	if err := s.subscribeAnnaSync(ctx); err != nil {
		return "", err
	}
	ds, err := s.anna.Devices(ctx)
	if err != nil {
		return "", err
	}
	if !hasDevice(ds, p.id) {
		return "", fmt.Errorf("phone %s not in Anna's devices", p.id)
	}
	return "phone " + p.id + " bound and connected", nil
}

// subscribeAnnaSync (re)subscribes Anna's phone to its sync topic (the hub relays there what
// the phone is entitled to, from its own cursor), with a fresh inbox.
func (s *story) subscribeAnnaSync(ctx context.Context) error {
	s.annaInbox = newInbox()
	if err := s.annaPhone.conn.Subscribe(ctx, devices.ControllerSyncTopic(s.annaPhone.id), 1, s.annaInbox.handler); err != nil {
		return fmt.Errorf("phone subscribe to its sync topic: %w", err)
	}
	return nil
}

func hasDevice(ds []apiclient.Device, id string) bool {
	for _, d := range ds {
		if d.ID == id {
			return true
		}
	}
	return false
}

// provision makes one factory gadget and connects it with its factory secret.
func (s *story) provision(ctx context.Context, typ devices.Type) (*device, error) {
	cs, err := s.api.Provision(ctx, string(typ), 1)
	if err != nil {
		return nil, fmt.Errorf("provision %s: %w", typ, err)
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("provision %s: got %d devices", typ, len(cs))
	}
	d := newDevice(cs[0].DeviceID, typ, s.log)
	d.factory = cs[0].Secret
	if err := d.connect(ctx, s.t, d.factory, true); err != nil {
		return nil, fmt.Errorf("%s connect with factory secret: %w", typ, err)
	}
	return d, nil
}

// 6. Anna binds her band with the code the band shows (from her phone, over MQTT).
func (s *story) bindBand(ctx context.Context) (string, error) {
	band, err := s.provision(ctx, devices.Band)
	if err != nil {
		return "", err
	}
	s.band = band
	code, err := band.bindCode(ctx)
	if err != nil {
		return "", err
	}
	raw, err := s.annaPhone.request(ctx, devices.OpBind, devices.BindArgs{DeviceID: band.id, Code: code})
	if err != nil {
		return "", fmt.Errorf("phone bind: %w", err)
	}
	res, err := decodeInto[devices.BindResult](raw)
	if err != nil {
		return "", err
	}
	if res.DeviceID != band.id || res.AccountID != s.annaID {
		return "", fmt.Errorf("bind result %s", raw)
	}
	if err := band.awaitBound(ctx, s.t, s.annaID); err != nil {
		return "", err
	}
	return "band " + band.id + " bound from the phone with code shown by the band; reconnected with its binding secret", nil
}

// 7. Anna binds her scale (this time from the web API).
func (s *story) bindScale(ctx context.Context) (string, error) {
	scale, err := s.provision(ctx, devices.Scale)
	if err != nil {
		return "", err
	}
	s.scale = scale
	code, err := scale.bindCode(ctx)
	if err != nil {
		return "", err
	}
	if err := s.anna.Bind(ctx, scale.id, code); err != nil {
		return "", fmt.Errorf("bind over HTTP: %w", err)
	}
	if err := scale.awaitBound(ctx, s.t, s.annaID); err != nil {
		return "", err
	}
	return "scale " + scale.id + " bound over HTTP", nil
}

// 8. Boris tries to bind Anna's band: device_locked, over HTTP and from his phone.
func (s *story) activationLock(ctx context.Context) (string, error) {
	code, err := s.band.bindCode(ctx)
	if err != nil {
		return "", err
	}
	err = s.boris.Bind(ctx, s.band.id, code)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Code != hub.EDeviceLocked {
		return "", fmt.Errorf("Boris binding Anna's band over HTTP: got %v, want device_locked", err)
	}
	if strings.Contains(ae.Message, s.annaID) || strings.Contains(ae.Message, "anna") {
		return "", fmt.Errorf("the refusal names the owner: %q", ae.Message)
	}
	cr, err := s.boris.RegisterDevice(ctx, "phone", "Boris's phone", "imei-boris-"+s.borisID)
	if err != nil {
		return "", fmt.Errorf("register Boris's phone: %w", err)
	}
	bp := newDevice(cr.DeviceID, devices.Phone, s.log)
	bp.secret = cr.Secret
	if err := bp.connect(ctx, s.t, bp.secret, true); err != nil {
		return "", fmt.Errorf("Boris's phone connect: %w", err)
	}
	s.borisPhone = bp
	if _, err := bp.request(ctx, devices.OpBind, devices.BindArgs{DeviceID: s.band.id, Code: code}); remoteCode(err) != hub.EDeviceLocked {
		return "", fmt.Errorf("Boris's phone binding Anna's band: got %v, want device_locked", err)
	}
	audit, err := s.anna.Audit(ctx)
	if err != nil {
		return "", err
	}
	for _, e := range audit {
		if e.Event == hub.AuditBindRefused && e.DeviceID == s.band.id {
			return "device_locked over HTTP and MQTT; Anna's audit log records the attempt", nil
		}
	}
	return "", errors.New("Anna's audit log lacks the refused binding")
}

// pair pairs a controller with a gadget and waits for both "paired" commands.
func pair(ctx context.Context, ctl, gadget *device) error {
	if _, err := ctl.request(ctx, devices.OpPair, devices.PairArgs{DeviceID: gadget.id}); err != nil {
		return notImplemented(fmt.Errorf("pair %s with %s: %w", ctl.id, gadget.id, err))
	}
	for _, side := range []struct{ d, peer *device }{{ctl, gadget}, {gadget, ctl}} {
		cmd, err := side.d.waitCommand(ctx, devices.CmdPaired, func(c devices.Command) bool {
			a, err := decodeInto[devices.PairedArgs](c.Args)
			return err == nil && a.PeerID == side.peer.id
		})
		if err != nil {
			return err
		}
		a, _ := decodeInto[devices.PairedArgs](cmd.Args)
		if err := a.Validate(); err != nil {
			return fmt.Errorf("paired command to %s: %w", side.d.id, err)
		}
	}
	return nil
}

// 9. Anna pairs band and phone (and the scale with the phone, for the relay step).
func (s *story) pairBandPhone(ctx context.Context) (string, error) {
	if err := pair(ctx, s.annaPhone, s.band); err != nil {
		return "", err
	}
	if err := pair(ctx, s.annaPhone, s.scale); err != nil {
		return "", err
	}
	return "band and scale paired with the phone; both sides got a link key", nil
}

// 10. Boris's phone tries to pair with Anna's band: refused.
func (s *story) crossAccountPairDenied(ctx context.Context) (string, error) {
	_, err := s.borisPhone.request(ctx, devices.OpPair, devices.PairArgs{DeviceID: s.band.id})
	if err = notImplemented(err); errors.Is(err, ErrNotImplemented) {
		return "", err
	}
	if err == nil {
		return "", errors.New("Boris's phone paired with Anna's band")
	}
	switch remoteCode(err) {
	case hub.ENotSameAccount, hub.ENotFound, hub.EForbidden:
	default:
		return "", fmt.Errorf("pair: got %w, want a refusal (not_same_account)", err)
	}
	// Neither side may have been told of a pairing.
	qctx, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	if c, err := s.band.waitCommand(qctx, devices.CmdPaired, func(c devices.Command) bool {
		a, _ := decodeInto[devices.PairedArgs](c.Args)
		return a.PeerID == s.borisPhone.id
	}); err == nil {
		return "", fmt.Errorf("the band was told it is paired with Boris's phone: %s", c.Args)
	}
	return "refused with " + remoteCode(err), nil
}

// 11. Boris's phone subscribes to # and to Anna's topics: refused, receives nothing.
func (s *story) crossAccountSubscribeDenied(ctx context.Context) (string, error) {
	leaks := make(chan string, 64)
	leak := func(topic string, _ []byte) {
		select {
		case leaks <- topic:
		default:
		}
	}
	filters := []string{"#", "+/+/#", "accounts/" + s.annaID + "/#", devices.SyncFilter(s.annaID),
		devices.DeviceFilter(s.annaPhone.id), devices.DeviceFilter(s.band.id), "devices/+/telemetry/#",
		devices.ControllerSyncTopic(s.annaPhone.id), "$share/g/" + devices.ControllerSyncTopic(s.annaPhone.id)}
	for _, f := range filters {
		var se *client.SubscribeError
		if err := s.borisPhone.conn.Subscribe(ctx, f, 1, leak); !errors.As(err, &se) {
			return "", fmt.Errorf("subscription %q not refused: %v", f, err)
		}
	}
	if !s.borisPhone.conn.Connected() {
		return "", errors.New("Boris's phone was disconnected by refused subscriptions")
	}
	// Traffic on Anna's topics: a request and response of her phone, her band's telemetry.
	if _, err := s.band.publish(ctx, devices.StreamBattery, devices.BatterySample{Percent: 81}); err != nil {
		return "", err
	}
	if _, err := s.annaPhone.request(ctx, devices.OpBindCode, nil); err != nil {
		return "", fmt.Errorf("Anna's phone probe request: %w", err)
	}
	select {
	case topic := <-leaks:
		return "", fmt.Errorf("Boris's phone received a message on %s", topic)
	case <-time.After(quiet):
	}
	return fmt.Sprintf("%d filters refused; nothing received", len(filters)), nil
}

// 12. The band sends steps and heart rate, the scale a weight; Anna's phone receives all, in
// order.
func (s *story) telemetryRelay(ctx context.Context) (string, error) {
	before, _ := s.annaInbox.snapshot()
	type sent struct {
		dev    *device
		stream string
		seq    uint64
		check  func(json.RawMessage) error
	}
	var all []sent
	pub := func(d *device, stream string, body any, check func(json.RawMessage) error) error {
		seq, err := d.publish(ctx, stream, body)
		if err == nil {
			all = append(all, sent{d, stream, seq, check})
		}
		return err
	}
	wantField := func(field string, want float64) func(json.RawMessage) error {
		return func(raw json.RawMessage) error {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
			if m[field] != want {
				return fmt.Errorf("%s = %v, want %v", field, m[field], want)
			}
			return nil
		}
	}
	if err := pub(s.band, devices.StreamSteps, devices.StepsSample{Count: 120}, wantField("count", 120)); err != nil {
		return "", err
	}
	if err := pub(s.band, devices.StreamHeartRate, devices.HeartRateSample{BPM: 72}, wantField("bpm", 72)); err != nil {
		return "", err
	}
	if err := pub(s.scale, devices.StreamWeight, devices.WeightSample{KG: 61.5, Person: "anna"}, wantField("kg", 61.5)); err != nil {
		return "", err
	}
	find := func(es []devices.SyncEntry, x sent) int {
		for i, e := range es {
			if e.Device == x.dev.id && e.Stream == x.stream && e.Seq == x.seq {
				return i
			}
		}
		return -1
	}
	es, err := s.annaInbox.waitFor(ctx, "the three samples", func(es []devices.SyncEntry) bool {
		for _, x := range all {
			if find(es[len(before):], x) < 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		return "", err
	}
	// devices/client hands messages to handlers concurrently, so arrival order in the inbox
	// is not wire order; the hub's order is the cursor order.
	es = sortedByCursor(es[len(before):])
	last := -1
	for _, x := range all {
		i := find(es, x)
		if err := x.check(es[i].Data); err != nil {
			return "", fmt.Errorf("%s %s: %w", x.dev.typ, x.stream, err)
		}
		// One publisher's samples arrive in the order sent; cursors grow in arrival order.
		if x.dev == s.band && i < last {
			return "", fmt.Errorf("band samples out of order: %+v", es)
		}
		if x.dev == s.band {
			last = i
		}
	}
	for i := 1; i < len(es); i++ {
		if es[i].Cursor <= es[i-1].Cursor {
			return "", fmt.Errorf("cursors not increasing: %d after %d", es[i].Cursor, es[i-1].Cursor)
		}
	}
	return fmt.Sprintf("steps, heart_rate and weight received in order (cursors %d..%d)", es[0].Cursor, es[len(es)-1].Cursor), nil
}

// 13. Anna's phone goes offline, the band sends 100 messages, the phone reconnects with a
// clean session and gets all 100 in order.
func (s *story) offlineCatchup(ctx context.Context) (string, error) {
	es, _ := s.annaInbox.snapshot()
	var high int64
	for _, e := range es {
		high = max(high, e.Cursor)
	}
	if high > 0 {
		// The phone has stored everything so far; the hub keeps what comes after.
		if _, err := s.annaPhone.request(ctx, devices.OpSyncAck, devices.SyncAckArgs{Cursor: high}); err != nil {
			return "", notImplemented(fmt.Errorf("sync_ack: %w", err))
		}
		s.lastAcked = high
	}
	s.annaPhone.disconnect()
	const n = 100
	first := s.band.seq[devices.StreamSteps] + 1
	for i := range n {
		if _, err := s.band.publish(ctx, devices.StreamSteps, devices.StepsSample{Count: int64(i)}); err != nil {
			return "", err
		}
	}
	if err := s.annaPhone.connect(ctx, s.t, s.annaPhone.secret, true); err != nil {
		return "", fmt.Errorf("phone reconnect: %w", err)
	}
	if err := s.subscribeAnnaSync(ctx); err != nil {
		return "", err
	}
	got, err := s.annaInbox.waitFor(ctx, "100 samples", func(es []devices.SyncEntry) bool {
		fresh, _ := fromDevice(es, s.band.id, devices.StreamSteps)
		c := 0
		for _, e := range fresh {
			if e.Seq >= first {
				c++
			}
		}
		return c >= n
	})
	if err != nil {
		return "", err
	}
	for _, e := range got {
		if e.Gap != nil {
			return "", fmt.Errorf("the hub reported a gap %d..%d", e.Gap.From, e.Gap.To)
		}
	}
	fresh, dups := fromDevice(sortedByCursor(got), s.band.id, devices.StreamSteps)
	var seqs []uint64
	redelivered := 0
	for _, e := range fresh {
		if e.Seq < first {
			redelivered++ // acknowledged before going offline: allowed, not required
			continue
		}
		seqs = append(seqs, e.Seq)
	}
	for i, q := range seqs {
		if q != first+uint64(i) {
			return "", fmt.Errorf("sample %d has seq %d, want %d (in order, none missing)", i, q, first+uint64(i))
		}
	}
	return fmt.Sprintf("%d of %d in order after a clean-session reconnect (%d duplicates, %d already acknowledged)", len(seqs), n, dups, redelivered), nil
}

// 14. The phone sets the band's alarm while the band is offline; the band gets it when it
// reconnects (clean session) and subscribes, without asking, applies it and reports it. Then
// Anna changes her profile (height, goal steps) from the web; the band, connected, gets the
// whole profile and reports the version it applied, which Anna sees.
func (s *story) settingsSync(ctx context.Context) (string, error) {
	s.band.disconnect()
	raw, err := s.annaPhone.request(ctx, devices.OpSettingsGet, devices.SettingsGetArgs{DeviceID: s.band.id})
	if err != nil {
		return "", notImplemented(fmt.Errorf("settings_get: %w", err))
	}
	cur, err := decodeInto[devices.SettingsResult](raw)
	if err != nil {
		return "", err
	}
	raw, err = s.annaPhone.request(ctx, devices.OpSettingsSet, devices.SettingsSetArgs{
		DeviceID: s.band.id, Desired: json.RawMessage(`{"alarm":"06:30"}`), BaseVersion: cur.Version})
	if err != nil {
		return "", notImplemented(fmt.Errorf("settings_set: %w", err))
	}
	set, err := decodeInto[devices.SettingsResult](raw)
	if err != nil {
		return "", err
	}
	if set.Version <= cur.Version {
		return "", fmt.Errorf("settings_set: version %d after %d", set.Version, cur.Version)
	}
	// The band comes back with a clean session, as after a reboot. It does not ask: the hub
	// sends what changed while it was away once its SUBSCRIBE to its commands topic is in.
	if err := s.band.connect(ctx, s.t, s.band.secret, true); err != nil {
		return "", fmt.Errorf("band reconnect: %w", err)
	}
	if _, err := s.band.applySettings(ctx, devices.DocDevice, set.Version); err != nil {
		return "", err
	}
	if mine, v := s.band.settings.Settings(); v != set.Version || !strings.Contains(string(mine), `"alarm":"06:30"`) {
		return "", fmt.Errorf("the band holds %s version %d, want alarm 06:30 version %d", mine, v, set.Version)
	}
	raw, err = s.annaPhone.request(ctx, devices.OpSettingsGet, devices.SettingsGetArgs{DeviceID: s.band.id})
	if err != nil {
		return "", fmt.Errorf("settings_get after the report: %w", err)
	}
	got, err := decodeInto[devices.SettingsResult](raw)
	if err != nil {
		return "", err
	}
	var reported map[string]any
	if err := json.Unmarshal(got.Reported, &reported); err != nil || reported["alarm"] != "06:30" || got.ReportedVersion != set.Version {
		return "", fmt.Errorf("the phone sees reported %s version %d, want alarm 06:30 version %d", got.Reported, got.ReportedVersion, set.Version)
	}

	// The account profile, from the web: every connected device of the account gets it.
	var prof devices.SettingsResult
	if err := s.anna.Do(ctx, http.MethodGet, "/api/v1/profile", nil, &prof); err != nil {
		return "", notImplemented(fmt.Errorf("read profile: %w", err))
	}
	patch := map[string]any{"desired": map[string]any{"height_cm": 168, "goal_steps": 9000}, "base_version": prof.Version}
	if err := s.anna.Do(ctx, http.MethodPut, "/api/v1/profile", patch, &prof); err != nil {
		return "", notImplemented(fmt.Errorf("write profile: %w", err))
	}
	applied := map[string]bool{}
	for _, d := range []*device{s.annaPhone, s.band, s.scale} {
		if d == nil || d.conn == nil {
			continue // offline: it gets the profile when it next subscribes
		}
		if _, err := d.applySettings(ctx, devices.DocProfile, prof.Version); err != nil {
			return "", err
		}
		applied[d.id] = true
	}
	if !applied[s.band.id] {
		return "", fmt.Errorf("the band is offline")
	}
	// The owner's view of who applied which version; reports are answered before this read,
	// so it is final.
	if err := s.anna.Do(ctx, http.MethodGet, "/api/v1/profile", nil, &prof); err != nil {
		return "", fmt.Errorf("read profile: %w", err)
	}
	for _, d := range prof.Devices {
		if applied[d.DeviceID] && (d.AppliedVersion != prof.Version || d.Behind) {
			return "", fmt.Errorf("%s applied profile version %d but the owner sees %d", d.DeviceID, prof.Version, d.AppliedVersion)
		}
	}
	return fmt.Sprintf("alarm 06:30 set while the band was offline, sent to it when it subscribed again, reported at version %d; "+
		"profile version %d sent to and applied by %d connected devices of %d", got.ReportedVersion, prof.Version, len(applied), len(prof.Devices)), nil
}

// commandRequest is the body of POST /api/v1/devices/{id}/commands.
type commandRequest struct {
	Type          string `json:"type"`
	Message       string `json:"message,omitempty"`
	ContactNumber string `json:"contact_number,omitempty"`
}

// lostMode is the lost_mode member of GET /api/v1/devices/{id}/commands.
type lostMode struct {
	DeviceID      string `json:"device_id"`
	Message       string `json:"message"`
	ContactNumber string `json:"contact_number"`
}

func (s *story) lostModeOf(ctx context.Context, id string) (*lostMode, error) {
	var out struct {
		LostMode *lostMode `json:"lost_mode"`
	}
	if err := s.anna.Do(ctx, http.MethodGet, "/api/v1/devices/"+pathEscape(id)+"/commands", nil, &out); err != nil {
		return nil, fmt.Errorf("read lost mode: %w", err)
	}
	return out.LostMode, nil
}

// commandState reads the state of one command the account sent a device.
func (s *story) commandState(ctx context.Context, deviceID, cmdID string) (string, error) {
	var out struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	path := "/api/v1/devices/" + pathEscape(deviceID) + "/commands/" + pathEscape(cmdID)
	if err := s.anna.Do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return "", fmt.Errorf("read command %s: %w", cmdID, err)
	}
	if out.ID != cmdID {
		return "", fmt.Errorf("read command %s: got command %q", cmdID, out.ID)
	}
	return out.State, nil
}

// 15. Anna's phone is stolen; from the web API she locks it with a message and her contact
// number. The phone (devices.PhoneModel under devices/phonesim) applies the lock and
// acknowledges it; the hub records the acknowledgement and shows the phone in lost mode.
func (s *story) lostModeLock(ctx context.Context) (string, error) {
	req := commandRequest{Type: devices.CmdLock, Message: "This phone is lost. Please call its owner.", ContactNumber: s.annaContact}
	if err := s.anna.Do(ctx, http.MethodPost, "/api/v1/devices/"+pathEscape(s.annaPhone.id)+"/commands", req, nil); err != nil {
		return "", notImplemented(fmt.Errorf("lock: %w", err))
	}
	h, err := s.annaPhone.waitHandled(ctx, devices.CmdLock, nil)
	if err != nil {
		return "", err
	}
	if !h.out.Ack || h.out.Status != devices.AckAcknowledged {
		return "", fmt.Errorf("the phone did not accept the lock command %s: %+v", h.cmd.Args, h.out)
	}
	phoneLM := s.annaPhone.phone.LostMode()
	if phoneLM == nil || phoneLM.Message != req.Message || phoneLM.ContactNumber != "+14155550123" {
		return "", fmt.Errorf("the phone shows %+v after lock command %s", phoneLM, h.cmd.Args)
	}
	// The runner answers OnCommand only after the hub answered its command_ack.
	if st, err := s.commandState(ctx, s.annaPhone.id, h.cmd.ID); err != nil || st != "acknowledged" {
		return "", fmt.Errorf("the hub has the lock command %s as %q (%v), want acknowledged", h.cmd.ID, st, err)
	}
	lm, err := s.lostModeOf(ctx, s.annaPhone.id)
	if err != nil {
		return "", err
	}
	if lm == nil || lm.Message != req.Message {
		return "", fmt.Errorf("the hub does not show the phone in lost mode: %+v", lm)
	}
	return "phone locked and acknowledged, showing " + phoneLM.ContactNumber, nil
}

// 16. On the locked phone, calling the contact number works, any other is refused: the
// phone's own rule (devices.PhoneModel.Dial), in the state the lock command left it.
func (s *story) lostModeCallRestriction(context.Context) (string, error) {
	phone := s.annaPhone.phone
	if !phone.Locked() {
		return "", errors.New("the phone is not in lost mode")
	}
	// Dialled as the owner wrote it, with spaces and brackets: the same number.
	if err := phone.Dial(s.annaContact); err != nil {
		return "", fmt.Errorf("calling the contact number %s: %w", s.annaContact, err)
	}
	if err := phone.Dial("112"); err != nil {
		return "", fmt.Errorf("emergency call: %w", err)
	}
	other := "+14155559876"
	if err := phone.Dial(other); devices.RefusalReason(err) != devices.ReasonLostMode {
		return "", fmt.Errorf("calling %s on the locked phone: %v, want refused with %s", other, err, devices.ReasonLostMode)
	}
	return "contact number and emergency callable, " + other + " refused (" + devices.ReasonLostMode + ")", nil
}

// 17. The thief tries to sign the phone out: refused without Anna's password. The phone's
// app refuses in lost mode; a tampered phone that sends the unbind anyway is refused by the
// hub: without a password as invalid, with a guess (and even with Anna's password) as
// lost_mode, the same answer whatever the password, so nothing can be guessed from it. Behind
// lost mode is the password check itself, shown on a device of Anna's that is not locked
// (her scale, which may sign itself out): no password invalid, a guess unauthorized.
func (s *story) unbindRequiresPassword(ctx context.Context) (string, error) {
	p := s.annaPhone
	const guess = "1234-guessed"
	if !p.phone.Locked() {
		return "", errors.New("the phone is not in lost mode")
	}
	if err := p.runner.SignOut(ctx, guess); !errors.Is(err, phonesim.ErrLocked) || devices.RefusalReason(err) != devices.ReasonLostMode {
		return "", fmt.Errorf("signing out in the phone's app: got %v, want the phone's own %s refusal", err, devices.ReasonLostMode)
	}
	noPassword := func(d *device) error {
		_, err := d.request(ctx, devices.OpUnbind, json.RawMessage(`{}`))
		if re := remoteError(err); re == nil || re.Code != hub.EInvalid || re.Field != "args.password" {
			return fmt.Errorf("%s: unbind without a password: got %v, want invalid on args.password", d.typ, err)
		}
		return nil
	}
	if err := noPassword(p); err != nil {
		return "", err
	}
	var lostModeAnswer *client.RemoteError
	for _, pw := range []string{guess, s.annaPassword} {
		err := p.runner.SignOutAnyway(ctx, pw)
		re := remoteError(err)
		if re == nil || re.Code != hub.EForbidden || !strings.HasPrefix(re.Message, devices.ReasonLostMode+":") {
			return "", fmt.Errorf("tampered phone's unbind in lost mode: got %v, want forbidden %s", err, devices.ReasonLostMode)
		}
		if lostModeAnswer != nil && *re != *lostModeAnswer {
			return "", fmt.Errorf("lost mode answers differ with the right and a wrong password: %v / %v", lostModeAnswer, re)
		}
		lostModeAnswer = re
	}
	if err := s.anna.Unbind(ctx, p.id, s.annaPassword); apiclient.Code(err) != hub.EForbidden {
		return "", fmt.Errorf("HTTP unbind in lost mode: got %v, want forbidden", err)
	}
	// The password check behind lost mode.
	if err := noPassword(s.scale); err != nil {
		return "", err
	}
	_, err := s.scale.request(ctx, devices.OpUnbind, devices.UnbindArgs{Password: guess})
	if re := remoteError(err); re == nil || re.Code != hub.EUnauthorized || re.Field != "password" {
		return "", fmt.Errorf("scale: unbind with a guessed password: got %v, want unauthorized on the password", err)
	}
	ds, err := s.anna.Devices(ctx)
	if err != nil {
		return "", err
	}
	if !hasDevice(ds, p.id) || !p.conn.Connected() || !p.phone.Locked() {
		return "", errors.New("the phone left Anna's account or lost mode")
	}
	if !hasDevice(ds, s.scale.id) {
		return "", errors.New("the scale left Anna's account")
	}
	return "phone app refuses (" + devices.ReasonLostMode + "); tampered phone: no password invalid, a guess and even " +
		"Anna's password forbidden " + devices.ReasonLostMode + " (same answer), HTTP too; unlocked scale: no password invalid, " +
		"a guess unauthorized; both stay Anna's", nil
}

// 18. Anna unlocks it with her password typed on the phone; the hub checks it (the phone
// never holds it) and sends the unlock command, which the phone applies and acknowledges.
func (s *story) unlockByOwner(ctx context.Context) (string, error) {
	p := s.annaPhone
	err := p.runner.Unlock(ctx, "0000")
	if err == nil {
		return "", errors.New("unlock with a wrong password succeeded")
	}
	if err = notImplemented(err); errors.Is(err, ErrNotImplemented) {
		return "", err
	}
	if re := remoteError(err); re == nil || re.Code != hub.EUnauthorized || re.Field != "args.password" {
		return "", fmt.Errorf("unlock with a wrong password: got %v, want unauthorized on args.password", err)
	}
	if !p.phone.Locked() {
		return "", errors.New("the phone left lost mode after a wrong password")
	}
	if err := p.runner.Unlock(ctx, s.annaPassword); err != nil {
		return "", notImplemented(fmt.Errorf("unlock: %w", err))
	}
	if p.phone.Locked() {
		return "", errors.New("the phone is still locked after the hub accepted the password")
	}
	h, err := p.waitHandled(ctx, devices.CmdUnlock, nil)
	if err != nil {
		return "", err
	}
	if h.out.Status != devices.AckAcknowledged {
		return "", fmt.Errorf("the phone answered the unlock command with %+v", h.out)
	}
	if st, err := s.commandState(ctx, p.id, h.cmd.ID); err != nil || st != "acknowledged" {
		return "", fmt.Errorf("the hub has the unlock command %s as %q (%v), want acknowledged", h.cmd.ID, st, err)
	}
	if err := p.phone.Dial("+14155559876"); err != nil {
		return "", fmt.Errorf("calling after the unlock: %w", err)
	}
	if lm, err := s.lostModeOf(ctx, p.id); err != nil || lm != nil {
		return "", fmt.Errorf("still in lost mode after unlocking: %+v %v", lm, err)
	}
	return "wrong password refused (unauthorized); unlocked with Anna's password, unlock command acknowledged, any number callable", nil
}

// 19. Anna sells her band: unbinds with her password; Boris binds it; Anna's phone no longer
// receives its data.
func (s *story) unbindAndNewOwner(ctx context.Context) (string, error) {
	band := s.band
	if err := s.anna.Unbind(ctx, band.id, s.annaOldPassword); apiclient.Code(err) != hub.EUnauthorized {
		return "", fmt.Errorf("unbind with Anna's old password: got %v, want unauthorized", err)
	}
	if err := s.anna.Unbind(ctx, band.id, s.annaPassword); err != nil {
		return "", fmt.Errorf("unbind: %w", err)
	}
	// The hub drops the band's session; the new owner's setup starts from the factory secret.
	if err := band.connect(ctx, s.t, band.factory, true); err != nil {
		return "", fmt.Errorf("band connect with its factory secret: %w", err)
	}
	code, err := band.bindCode(ctx)
	if err != nil {
		return "", err
	}
	if err := s.boris.Bind(ctx, band.id, code); err != nil {
		return "", fmt.Errorf("Boris binds the band: %w", err)
	}
	if err := band.awaitBound(ctx, s.t, s.borisID); err != nil {
		return "", err
	}
	borisInbox := newInbox()
	if err := s.borisPhone.conn.Subscribe(ctx, devices.ControllerSyncTopic(s.borisPhone.id), 1, borisInbox.handler); err != nil {
		return "", fmt.Errorf("Boris's phone sync subscription: %w", err)
	}
	if err := pair(ctx, s.borisPhone, band); err != nil {
		return "", err
	}
	annaBefore, _ := s.annaInbox.snapshot()
	seq, err := band.publish(ctx, devices.StreamSteps, devices.StepsSample{Count: 9})
	if err != nil {
		return "", err
	}
	if _, err := borisInbox.waitFor(ctx, "the band's sample at Boris's phone", func(es []devices.SyncEntry) bool {
		for _, e := range es {
			if e.Device == band.id && e.Seq == seq {
				return true
			}
		}
		return false
	}); err != nil {
		return "", err
	}
	time.Sleep(quiet) // what Anna would have got has had the time Boris's copy took, and more
	annaAfter, _ := s.annaInbox.snapshot()
	for _, e := range annaAfter[len(annaBefore):] {
		if e.Device == band.id {
			return "", fmt.Errorf("Anna's phone still receives the sold band's data (seq %d)", e.Seq)
		}
	}
	if ds, err := s.anna.Devices(ctx); err != nil || hasDevice(ds, band.id) {
		return "", fmt.Errorf("the band is still in Anna's devices (%v)", err)
	}
	return "unbound with the password, bound by Boris; his phone receives it, Anna's does not", nil
}
