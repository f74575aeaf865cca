package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
)

// rawDev is one device connection over a raw paho client with ordered delivery, so a test
// sees sync entries in the order the hub sent them, and sees every response (also those that
// answer no request, such as telemetry refusals). Tests keep one connection per device:
// reconnecting the same client ID at once races the broker's clean-up of the old session.
type rawDev struct {
	c  paho.Client
	id string

	mu       sync.Mutex
	entries  []devices.SyncEntry
	res      []devices.Response
	commands []devices.Command
	nextID   int
}

func connectRaw(t *testing.T, url, id, secret string, controller bool) *rawDev {
	t.Helper()
	r := &rawDev{id: id}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetPassword(secret).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetCleanSession(true).SetOrderMatters(true)
	r.c = paho.NewClient(o)
	if tok := r.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { r.c.Disconnect(0) })
	filters := map[string]byte{devices.ResponseTopic(id): 1, devices.CommandTopic(id): 1}
	if controller {
		filters[devices.ControllerSyncTopic(id)] = 1
	}
	tok := r.c.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch m.Topic() {
		case devices.ResponseTopic(id):
			var resp devices.Response
			_ = json.Unmarshal(m.Payload(), &resp)
			r.res = append(r.res, resp)
		case devices.CommandTopic(id):
			var c devices.Command
			_ = json.Unmarshal(m.Payload(), &c)
			r.commands = append(r.commands, c)
		default:
			var e devices.SyncEntry
			if err := json.Unmarshal(m.Payload(), &e); err != nil {
				t.Errorf("undecodable sync entry %s: %v", m.Payload(), err)
				return
			}
			r.entries = append(r.entries, e)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return r
}

func (r *rawDev) close() { r.c.Disconnect(250) }

func (r *rawDev) snapshot() []devices.SyncEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]devices.SyncEntry(nil), r.entries...)
}

// waitFor waits until at least n entries arrived.
func (r *rawDev) waitFor(t *testing.T, n int) []devices.SyncEntry {
	t.Helper()
	apptest.Eventually(t, 60*time.Second, func() error {
		if got := len(r.snapshot()); got < n {
			return fmt.Errorf("%d of %d sync entries", got, n)
		}
		return nil
	})
	return r.snapshot()
}

// request sends op and waits for its response.
func (r *rawDev) request(t *testing.T, op string, args any) (json.RawMessage, error) {
	t.Helper()
	r.mu.Lock()
	r.nextID++
	reqID := fmt.Sprintf("%s-%d", op, r.nextID)
	r.mu.Unlock()
	raw, _ := json.Marshal(args)
	b, _ := json.Marshal(devices.Request{ID: reqID, Op: op, Args: raw})
	if tok := r.c.Publish(devices.RequestTopic(r.id), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v", op, tok.Error())
	}
	var resp devices.Response
	apptest.Eventually(t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, x := range r.res {
			if x.ID == reqID {
				resp = x
				return nil
			}
		}
		return fmt.Errorf("no response to %s", reqID)
	})
	if !resp.OK {
		return nil, &client.RemoteError{Code: resp.Error.Code, Message: resp.Error.Message, Field: resp.Error.Field, CurrentVersion: resp.Error.CurrentVersion}
	}
	return resp.Result, nil
}

// ack sends sync_ack for cursor.
func (r *rawDev) ack(t *testing.T, cursor int64) {
	t.Helper()
	if _, err := r.request(t, devices.OpSyncAck, devices.SyncAckArgs{Cursor: cursor}); err != nil {
		t.Fatalf("sync_ack: %v", err)
	}
}

// command waits for the next command of a type not seen before by this call's index.
func (r *rawDev) command(t *testing.T, typ string, nth int) devices.Command {
	t.Helper()
	var cmd devices.Command
	apptest.Eventually(t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		seen := 0
		for _, c := range r.commands {
			if c.Type == typ {
				seen++
				if seen == nth {
					cmd = c
					return nil
				}
			}
		}
		return fmt.Errorf("%d %q commands, waiting for #%d", seen, typ, nth)
	})
	return cmd
}

// telemetry publishes one sample at QoS 1 and waits for the PUBACK.
func (r *rawDev) telemetry(t *testing.T, stream string, seq uint64, body string) {
	t.Helper()
	p := fmt.Sprintf(`{"seq":%d,"ts":%q,%s}`, seq, time.Now().UTC().Format(time.RFC3339Nano), body)
	if tok := r.c.Publish(devices.TelemetryTopic(r.id, stream), 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("telemetry: %v", tok.Error())
	}
}

// refused waits for a refusal with code on the response topic for response ID id.
func (r *rawDev) refused(t *testing.T, id, code string) {
	t.Helper()
	apptest.Eventually(t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, x := range r.res {
			if x.ID == id && !x.OK && x.Error != nil && x.Error.Code == code {
				return nil
			}
		}
		return fmt.Errorf("no %s refusal for %s in %+v", code, id, r.res)
	})
}

// checkOrdered fails unless entries have increasing cursors and, per device and stream,
// increasing seqs.
func checkOrdered(t *testing.T, es []devices.SyncEntry) {
	t.Helper()
	last := map[string]uint64{}
	for i, e := range es {
		if i > 0 && e.Cursor <= es[i-1].Cursor {
			t.Fatalf("entry %d: cursor %d after %d", i, e.Cursor, es[i-1].Cursor)
		}
		if e.Gap != nil {
			continue
		}
		k := e.Device + "/" + e.Stream
		if e.Seq <= last[k] {
			t.Fatalf("entry %d: %s seq %d after %d", i, k, e.Seq, last[k])
		}
		last[k] = e.Seq
	}
}

// waitOffline waits until the hub has seen the device's connection go, so the next
// connection under the same client ID does not race the broker's clean-up of the old one.
func (w *world) waitOffline(t *testing.T, id string) {
	t.Helper()
	apptest.Eventually(t, 10*time.Second, func() error {
		ds, err := w.anna.Devices(testCtx(t))
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.ID == id && d.Online {
				return errors.New("still online")
			}
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // the broker's clean-up follows the offline mark
}

func remoteCode(err error) string {
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return fmt.Sprint(err)
}

// pairWorld is Anna's phone and a band bound to her, both on raw connections, not paired.
func pairWorld(t *testing.T) (*world, *rawDev, *rawDev) {
	t.Helper()
	w := newWorld(t)
	band, secret, bound := w.bindBand(t)
	bound.Close()
	w.waitOffline(t, band.DeviceID)
	w.waitOffline(t, w.annaPhone.DeviceID)
	return w, connectRaw(t, w.h.MQTTURL(), w.annaPhone.DeviceID, w.annaPhone.Secret, true),
		connectRaw(t, w.h.MQTTURL(), band.DeviceID, secret, false)
}

// pair pairs phone and band and checks both got the same 32-byte link key.
func pair(t *testing.T, phone, band *rawDev, nth int) {
	t.Helper()
	if _, err := phone.request(t, devices.OpPair, devices.PairArgs{DeviceID: band.id}); err != nil {
		t.Fatalf("pair: %v", err)
	}
	var keys [][]byte
	for _, d := range []*rawDev{phone, band} {
		cmd := d.command(t, devices.CmdPaired, nth)
		var a devices.PairedArgs
		if err := json.Unmarshal(cmd.Args, &a); err != nil || a.Validate() != nil {
			t.Fatalf("paired command %s: %v", cmd.Args, err)
		}
		keys = append(keys, a.LinkKey)
	}
	if !bytes.Equal(keys[0], keys[1]) {
		t.Fatal("the two sides got different link keys")
	}
}

func TestPairingRefusals(t *testing.T) {
	w, phone, band := pairWorld(t)
	ctx := testCtx(t)
	tablet, err := w.anna.RegisterDevice(ctx, "tablet", "Anna's tablet", "")
	if err != nil {
		t.Fatal(err)
	}
	unbound := w.provision(t, "scale")
	boris := connectRaw(t, w.h.MQTTURL(), w.borisPhone.DeviceID, w.borisPhone.Secret, true)

	tests := []struct {
		name string
		from *rawDev
		peer string
		code string
	}{
		{"other account's band", boris, band.id, "not_same_account"},
		{"no such device", phone, "dev_doesnotexist", "not_same_account"},
		{"two controllers", phone, tablet.DeviceID, "not_pairable"},
		{"unbound gadget", phone, unbound.DeviceID, "not_bound"},
		{"itself", phone, phone.id, "not_pairable"},
		{"other account's phone", phone, w.borisPhone.DeviceID, "not_same_account"},
		{"band with band's owner's phone from Boris's side", boris, phone.id, "not_same_account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.from.request(t, devices.OpPair, devices.PairArgs{DeviceID: tt.peer})
			if got := remoteCode(err); got != tt.code {
				t.Fatalf("pair = %v, want %s", err, tt.code)
			}
		})
	}
	// The refusal to Boris reads exactly like the one for a device that does not exist.
	_, e1 := boris.request(t, devices.OpPair, devices.PairArgs{DeviceID: band.id})
	_, e2 := boris.request(t, devices.OpPair, devices.PairArgs{DeviceID: "dev_doesnotexist"})
	if e1.Error() != e2.Error() {
		t.Fatalf("refusals differ: %q vs %q", e1, e2)
	}
	// The band itself may ask; pairing twice is a conflict.
	if _, err := band.request(t, devices.OpPair, devices.PairArgs{DeviceID: phone.id}); err != nil {
		t.Fatalf("band pairs: %v", err)
	}
	if _, err := phone.request(t, devices.OpPair, devices.PairArgs{DeviceID: band.id}); remoteCode(err) != "conflict" {
		t.Fatalf("second pair: %v", err)
	}
}

// TestPairingAndRelay: an unpaired band's telemetry is refused with a reason; once paired,
// its samples reach the phone on the phone's sync topic, in order, once each; unpairing
// ends it and tells both sides.
func TestPairingAndRelay(t *testing.T) {
	_, phone, band := pairWorld(t)

	band.telemetry(t, devices.StreamSteps, 1, `"count":5`)
	band.refused(t, "telemetry:steps:1", "not_paired")
	band.telemetry(t, devices.StreamHeartRate, 2, `"bpm":400`)
	band.refused(t, "telemetry:heart_rate:2", "invalid")

	pair(t, phone, band, 1)
	const n = 50
	for i := 1; i <= n; i++ {
		band.telemetry(t, devices.StreamSteps, uint64(i), fmt.Sprintf(`"count":%d`, i))
	}
	// A repeated seq (a redelivery) is acknowledged and stored once.
	band.telemetry(t, devices.StreamSteps, n, fmt.Sprintf(`"count":%d`, n))
	band.telemetry(t, devices.StreamBattery, 1, `"percent":80`)
	es := phone.waitFor(t, n+1)
	checkOrdered(t, es)
	for i, e := range es[:n] {
		if e.Device != band.id || e.Stream != devices.StreamSteps || e.Seq != uint64(i+1) || string(e.Data) != fmt.Sprintf(`{"count":%d}`, i+1) {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
	if es[n].Stream != devices.StreamBattery {
		t.Fatalf("last entry %+v", es[n])
	}
	phone.ack(t, es[n].Cursor)
	time.Sleep(200 * time.Millisecond) // a duplicate, if one were relayed, would show by now
	if got := len(phone.snapshot()); got != n+1 {
		t.Fatalf("%d entries, want %d (duplicate relayed?)", got, n+1)
	}

	// Unpair from the band's side: both are told, and its telemetry is refused again.
	if _, err := band.request(t, devices.OpUnpair, devices.PairArgs{DeviceID: phone.id}); err != nil {
		t.Fatalf("unpair: %v", err)
	}
	phone.command(t, devices.CmdUnpaired, 1)
	band.command(t, devices.CmdUnpaired, 1)
	band.telemetry(t, devices.StreamSteps, n+1, `"count":1`)
	band.refused(t, fmt.Sprintf("telemetry:steps:%d", n+1), "not_paired")
	// Paired again: a fresh link key, and data flows again.
	pair(t, phone, band, 2)
	band.telemetry(t, devices.StreamSteps, n+2, `"count":1`)
	if es := phone.waitFor(t, n+2); es[n+1].Seq != n+2 {
		t.Fatalf("after re-pairing got %+v", es[n+1])
	}
}

// TestUnbindEndsPairing: unbinding the band ends the pairing and tells the phone, and the
// phone gets none of the band's data afterwards, not even entries it had not received yet.
func TestUnbindEndsPairing(t *testing.T) {
	w, phone, band := pairWorld(t)
	ctx := testCtx(t)
	pair(t, phone, band, 1)
	phone.close()
	w.waitOffline(t, phone.id)
	for i := 1; i <= 5; i++ {
		band.telemetry(t, devices.StreamSteps, uint64(i), fmt.Sprintf(`"count":%d`, i))
	}
	if err := w.anna.Unbind(ctx, band.id, w.annaPassword); err != nil {
		t.Fatal(err)
	}
	band.command(t, devices.CmdUnpaired, 1)
	phone = connectRaw(t, w.h.MQTTURL(), phone.id, w.annaPhone.Secret, true)
	time.Sleep(300 * time.Millisecond) // entries, if any were relayed, would show by now
	if es := phone.snapshot(); len(es) != 0 {
		t.Fatalf("phone received %d entries of an unbound band: %+v", len(es), es[0])
	}
}
