package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/hub"
)

// newSyncWorld is newWorld with a configuration of the test's choosing.
func newSyncWorld(t *testing.T, mutate func(*config.Config)) *world {
	t.Helper()
	ctx := testCtx(t)
	h := apptest.Start(t, mutate)
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	w := &world{h: h, api: api, annaPassword: "anna-likes-long-walks"}
	la, err := api.CreateAccount(ctx, "anna@example.com", w.annaPassword)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := api.CreateAccount(ctx, "+14155552671", "boris-password-42")
	if err != nil {
		t.Fatal(err)
	}
	w.anna, w.boris, w.annaID, w.borisID = api.WithToken(la.Token), api.WithToken(lb.Token), la.AccountID, lb.AccountID
	if w.annaPhone, err = w.anna.RegisterDevice(ctx, "phone", "Anna's phone", "imei-anna"); err != nil {
		t.Fatal(err)
	}
	if w.borisPhone, err = w.boris.RegisterDevice(ctx, "phone", "Boris's phone", "imei-boris"); err != nil {
		t.Fatal(err)
	}
	return w
}

// publishMany publishes steps samples from..to at QoS 1 without waiting for each PUBACK
// (as a band flushing its backlog does) and waits for all of them.
func (r *rawDev) publishMany(t *testing.T, from, to int) {
	t.Helper()
	toks := make([]paho.Token, 0, to-from+1)
	for i := from; i <= to; i++ {
		p := fmt.Sprintf(`{"seq":%d,"ts":%q,"count":%d}`, i, time.Now().UTC().Format(time.RFC3339Nano), i%1000)
		toks = append(toks, r.c.Publish(devices.TelemetryTopic(r.id, devices.StreamSteps), 1, false, p))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

// TestOfflineCatchUp: a phone that was away while the band published more entries than
// mochi's in-flight limit (8,192) connects with a clean session and gets every one, in order,
// from its durable cursor, and nothing it acknowledged before.
func TestOfflineCatchUp(t *testing.T) {
	w, phone, band := pairWorld(t)
	pair(t, phone, band, 1)
	band.publishMany(t, 1, 10)
	es := phone.waitFor(t, 10)
	phone.ack(t, es[9].Cursor)
	phone.close()
	w.waitOffline(t, phone.id)

	const missed = 9000
	band.publishMany(t, 11, 10+missed)
	phone = connectRaw(t, w.h.MQTTURL(), phone.id, w.annaPhone.Secret, true)
	es = phone.waitFor(t, missed)
	checkOrdered(t, es)
	if es[0].Seq != 11 || es[missed-1].Seq != 10+missed {
		t.Fatalf("got seq %d..%d, want 11..%d", es[0].Seq, es[missed-1].Seq, 10+missed)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(phone.snapshot()); n != missed {
		t.Fatalf("%d entries, want %d", n, missed)
	}
}

// TestGapPastRetention: entries deleted by retention before the phone came back are reported
// as a gap, then the rest follows.
func TestGapPastRetention(t *testing.T) {
	w := newSyncWorld(t, func(c *config.Config) { c.Sync.MaxEntries = 5 })
	band, secret, bound := w.bindBand(t)
	bound.Close()
	w.waitOffline(t, band.DeviceID)
	w.waitOffline(t, w.annaPhone.DeviceID)
	phone := connectRaw(t, w.h.MQTTURL(), w.annaPhone.DeviceID, w.annaPhone.Secret, true)
	b := connectRaw(t, w.h.MQTTURL(), band.DeviceID, secret, false)
	pair(t, phone, b, 1)
	b.publishMany(t, 1, 2)
	es := phone.waitFor(t, 2)
	phone.ack(t, es[1].Cursor)
	phone.close()
	w.waitOffline(t, phone.id)

	b.publishMany(t, 3, 22)
	n, err := w.h.Hub().PruneSync(testCtx(t))
	if err != nil || n != 17 {
		t.Fatalf("pruned %d (want 17): %v", n, err)
	}
	phone = connectRaw(t, w.h.MQTTURL(), phone.id, w.annaPhone.Secret, true)
	ackedCursor := es[1].Cursor
	es = phone.waitFor(t, 6)
	checkOrdered(t, es)
	if g := es[0].Gap; g == nil || g.From != ackedCursor+1 || g.To != es[0].Cursor {
		t.Fatalf("first entry is not a gap: %+v", es[0])
	}
	for i, e := range es[1:] {
		if e.Gap != nil || e.Seq != uint64(18+i) {
			t.Fatalf("entry %d after the gap: %+v", i, e)
		}
	}
}

// TestSettingsSync: a stale write is refused with the current version; the band gets the
// change, reports back, and the phone sees both.
func TestSettingsSync(t *testing.T) {
	w, phone, band := pairWorld(t)
	ctx := testCtx(t)
	raw, err := phone.request(t, devices.OpSettingsSet, devices.SettingsSetArgs{DeviceID: band.id, Desired: json.RawMessage(`{"alarm":"07:00","units":"metric"}`), BaseVersion: 0})
	if err != nil {
		t.Fatalf("settings_set: %v", err)
	}
	var res devices.SettingsResult
	_ = json.Unmarshal(raw, &res)
	if res.Version != 1 {
		t.Fatalf("version %d", res.Version)
	}
	// A second writer that still thinks it is version 0 is refused, not overwritten.
	_, err = phone.request(t, devices.OpSettingsSet, devices.SettingsSetArgs{DeviceID: band.id, Desired: json.RawMessage(`{"alarm":"09:00"}`), BaseVersion: 0})
	var re *client.RemoteError
	if remoteCode(err) != "stale_version" || !errors.As(err, &re) || re.CurrentVersion == nil || *re.CurrentVersion != 1 {
		t.Fatalf("stale write: %v, want stale_version with current_version 1", err)
	}
	cmd := band.command(t, devices.CmdSettings, 1)
	var sa devices.SettingsArgs
	if err := json.Unmarshal(cmd.Args, &sa); err != nil || sa.Version != 1 {
		t.Fatalf("settings command %s", cmd.Args)
	}
	if _, err := band.request(t, devices.OpSettingsReport, devices.SettingsReportArgs{Reported: json.RawMessage(`{"alarm":"07:00","units":"metric"}`), Version: 1}); err != nil {
		t.Fatal(err)
	}
	// The same through HTTP: the owner sees desired and reported; a stale PUT is 409.
	var got devices.SettingsResult
	if err := w.anna.Do(ctx, "GET", "/api/v1/devices/"+band.id+"/settings", nil, &got); err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || got.ReportedVersion != 1 || len(got.Reported) == 0 {
		t.Fatalf("settings %+v", got)
	}
	err = w.anna.Do(ctx, "PUT", "/api/v1/devices/"+band.id+"/settings", map[string]any{"desired": map[string]any{"units": "imperial"}, "base_version": 0}, nil)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Code != "stale_version" || ae.Status != 409 || ae.CurrentVersion == nil || *ae.CurrentVersion != 1 {
		t.Fatalf("stale PUT: %v, want 409 stale_version with current_version 1", err)
	}
	// A number no 64-bit float holds is refused where it comes in, with the field named,
	// through MQTT and HTTP alike: stored, it would break every later merge and delta.
	_, err = band.request(t, devices.OpSettingsReport, devices.SettingsReportArgs{Reported: json.RawMessage(`{"alarm":1e700}`), Version: 1})
	if !errors.As(err, &re) || re.Code != "invalid" || re.Field != "args.reported" || !strings.Contains(re.Message, "1e700") {
		t.Fatalf("report with 1e700: %v, want invalid on args.reported naming the number", err)
	}
	err = w.anna.Do(ctx, "PUT", "/api/v1/devices/"+band.id+"/settings", map[string]any{"desired": json.RawMessage(`{"units":-1e400}`), "base_version": 1}, nil)
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "invalid" || ae.Field != "desired" || !strings.Contains(ae.Message, "-1e400") {
		t.Fatalf("PUT with -1e400: %+v, want 400 invalid on desired naming the number", err)
	}
	if err := w.anna.Do(ctx, "GET", "/api/v1/devices/"+band.id+"/settings", nil, &got); err != nil || got.Version != 1 || !strings.Contains(string(got.Reported), "07:00") {
		t.Fatalf("settings after refused writes: %+v, %v; want version 1 and the reported alarm 07:00", got, err)
	}
	// Boris cannot read Anna's band's settings.
	if err := w.boris.Do(ctx, "GET", "/api/v1/devices/"+band.id+"/settings", nil, &got); apiclient.Code(err) != "not_found" {
		t.Fatalf("Boris reads Anna's settings: %v", err)
	}
}

// TestAckedTelemetrySurvivesSIGKILL: a band publishes at QoS 1 while the hub process is
// killed; every sample it got a PUBACK for is in the store after a restart.
func TestAckedTelemetrySurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a hub process")
	}
	bin := apptest.BuildBinary(t)
	dir := t.TempDir()
	p := apptest.StartProcess(t, bin, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api := apiclient.New("http://" + p.HTTPAddr)
	api.AdminToken = "test-admin-token"
	la, err := api.CreateAccount(ctx, "anna@example.com", "anna-likes-long-walks")
	if err != nil {
		t.Fatal(err)
	}
	anna := api.WithToken(la.Token)
	phoneCreds, err := anna.RegisterDevice(ctx, "phone", "phone", "")
	if err != nil {
		t.Fatal(err)
	}
	bands, err := api.Provision(ctx, "band", 1)
	if err != nil {
		t.Fatal(err)
	}
	mqttURL := "tcp://" + p.MQTTAddr
	factory, err := client.Connect(ctx, client.Options{Broker: mqttURL, DeviceID: bands[0].DeviceID, Secret: bands[0].Secret, CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := factory.Request(ctx, devices.OpBindCode, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bc devices.BindCodeResult
	_ = json.Unmarshal(raw, &bc)
	if err := anna.Bind(ctx, bands[0].DeviceID, bc.Code); err != nil {
		t.Fatal(err)
	}
	var bound devices.BoundArgs
	_ = json.Unmarshal(nextCommand(t, factory, devices.CmdBound).Args, &bound)
	factory.Close()
	phone := connectRaw(t, mqttURL, phoneCreds.DeviceID, phoneCreds.Secret, true)
	if _, err := phone.request(t, devices.OpPair, devices.PairArgs{DeviceID: bands[0].DeviceID}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the factory session's clean-up finish
	band := connectRaw(t, mqttURL, bands[0].DeviceID, bound.Secret, false)

	var mu sync.Mutex
	acked := map[uint64]bool{}
	var wg sync.WaitGroup
	for i := 1; i <= 20000; i++ {
		seq := uint64(i)
		pl := fmt.Sprintf(`{"seq":%d,"ts":%q,"count":1}`, seq, time.Now().UTC().Format(time.RFC3339Nano))
		tok := band.c.Publish(devices.TelemetryTopic(band.id, devices.StreamSteps), 1, false, pl)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
				mu.Lock()
				acked[seq] = true
				mu.Unlock()
			}
		}()
		if i == 3000 {
			p.Kill() // mid-stream, with publishes in flight
		}
	}
	band.c.Disconnect(0)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}

	p2 := apptest.StartProcess(t, bin, dir)
	api2 := apiclient.New("http://" + p2.HTTPAddr).WithToken(la.Token)
	storedSeqs := func() map[uint64]bool {
		t.Helper()
		stored := map[uint64]bool{}
		after := int64(0)
		for range 1000 {
			var page hub.TelemetryPage
			q := url.Values{"limit": {"1000"}, "after": {fmt.Sprint(after)}, "stream": {"steps"}}
			if err := api2.Do(ctx, "GET", "/api/v1/devices/"+bands[0].DeviceID+"/telemetry?"+q.Encode(), nil, &page); err != nil {
				t.Fatal(err)
			}
			for _, s := range page.Samples {
				if stored[s.Seq] {
					t.Fatalf("seq %d stored twice", s.Seq)
				}
				stored[s.Seq] = true
			}
			if page.Next == 0 {
				break
			}
			after = page.Next
		}
		return stored
	}
	stored := storedSeqs()
	var top uint64
	for seq := range acked {
		if !stored[seq] {
			t.Fatalf("seq %d was acknowledged but is not stored (%d acked, %d stored)", seq, len(acked), len(stored))
		}
		top = max(top, seq)
	}
	// The band resends everything up to the last seq it saw acknowledged, as a band that
	// lost track would: the hub, which kept its duplicate check across the kill (saved part
	// and log), stores each seq once, and only what it lacked.
	band2 := connectRaw(t, "tcp://"+p2.MQTTAddr, bands[0].DeviceID, bound.Secret, false)
	for seq := uint64(1); seq <= top; seq++ {
		pl := fmt.Sprintf(`{"seq":%d,"ts":%q,"count":1}`, seq, time.Now().UTC().Format(time.RFC3339Nano))
		tok := band2.c.Publish(devices.TelemetryTopic(band2.id, devices.StreamSteps), 1, false, pl)
		if seq == top && (!tok.WaitTimeout(20*time.Second) || tok.Error() != nil) {
			t.Fatalf("resend of seq %d: %v", seq, tok.Error())
		}
	}
	again := storedSeqs() // fails on any seq stored twice
	for seq := uint64(1); seq <= top; seq++ {
		if !again[seq] {
			t.Fatalf("seq %d resent after the restart is not stored", seq)
		}
	}
	if len(again) != len(stored)+int(top)-countUpTo(stored, top) {
		t.Fatalf("%d stored after the resend, want %d", len(again), len(stored)+int(top)-countUpTo(stored, top))
	}
	t.Logf("%d acknowledged before the kill, %d stored; after resending 1..%d, %d stored", len(acked), len(stored), top, len(again))
}

// countUpTo is how many of set are at most top.
func countUpTo(set map[uint64]bool, top uint64) int {
	n := 0
	for seq := range set {
		if seq <= top {
			n++
		}
	}
	return n
}
