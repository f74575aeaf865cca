package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/internal/mqttwire"
)

// expectUnbound waits for the "unbound" command, then for the hub to close the connection.
func expectUnbound(t *testing.T, c *client.Client, who string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case cmd := <-c.Commands():
			if cmd.Type == devices.CmdUnbound {
				apptest.Eventually(t, 10*time.Second, func() error {
					if c.Connected() {
						return errors.New(who + " still connected after unbind")
					}
					return nil
				})
				return
			}
		case <-timeout:
			t.Fatalf("%s was not told it is unbound", who)
		}
	}
}

// TestUnbindNoticeReachesConnectedDevice: a connected band is told it is unbound before the
// hub disconnects it (the notice used to be published and the connection closed at once, so
// the notice was usually still queued when the connection went).
func TestUnbindNoticeReachesConnectedDevice(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	for i := range 5 {
		band, _, bound := w.bindBand(t)
		if err := w.anna.Unbind(ctx, band.DeviceID, w.annaPassword); err != nil {
			t.Fatal(err)
		}
		expectUnbound(t, bound, "band "+string(rune('1'+i)))
	}
}

// TestUnbindOverMQTT: the phone unbinds itself with the account password (it gets the
// answer, then "unbound", then is disconnected and its secret is dead), and another
// controller of the account unbinds a band.
func TestUnbindOverMQTT(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	tablet, err := w.anna.RegisterDevice(ctx, "tablet", "Anna's tablet", "")
	if err != nil {
		t.Fatal(err)
	}
	band, bandSecret, bound := w.bindBand(t)

	tc := w.connect(t, tablet.DeviceID, tablet.Secret)
	if _, err := tc.Request(ctx, devices.OpUnbind, devices.UnbindArgs{DeviceID: band.DeviceID, Password: "wrong password"}); !isRemote(err, "unauthorized") {
		t.Fatalf("unbind with a wrong password: %v", err)
	}
	if _, err := tc.Request(ctx, devices.OpUnbind, devices.UnbindArgs{DeviceID: band.DeviceID, Password: w.annaPassword}); err != nil {
		t.Fatalf("tablet unbinds the band: %v", err)
	}
	expectUnbound(t, bound, "band")
	if _, err := client.Connect(ctx, client.Options{Broker: w.h.MQTTURL(), DeviceID: band.DeviceID, Secret: bandSecret, CleanSession: true}); !errors.Is(err, client.ErrNotAuthorized) {
		t.Fatalf("band's binding secret after unbind: %v", err)
	}

	phone := w.connect(t, w.annaPhone.DeviceID, w.annaPhone.Secret)
	if _, err := phone.Request(ctx, devices.OpUnbind, devices.UnbindArgs{Password: w.annaPassword}); err != nil {
		t.Fatalf("phone unbinds itself: %v", err)
	}
	expectUnbound(t, phone, "phone")
	if _, err := client.Connect(ctx, client.Options{Broker: w.h.MQTTURL(), DeviceID: w.annaPhone.DeviceID, Secret: w.annaPhone.Secret, CleanSession: true}); !errors.Is(err, client.ErrNotAuthorized) {
		t.Fatalf("phone's secret after unbinding itself: %v", err)
	}
	ds, err := w.anna.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.ID == w.annaPhone.DeviceID || d.ID == band.DeviceID {
			t.Errorf("%s still in Anna's devices", d.ID)
		}
	}
	audit, _ := w.anna.Audit(ctx)
	if !hasEvent(audit, "unbind", band.DeviceID) || !hasEvent(audit, "unbind", w.annaPhone.DeviceID) {
		t.Errorf("audit lacks the unbinds: %+v", audit)
	}
}

func isRemote(err error, code string) bool {
	var re *client.RemoteError
	return errors.As(err, &re) && re.Code == code
}

// TestUnbindNoticeBehindBacklog: the notice reaches a band whose connection has a backlog of
// messages queued in the broker (here responses of ~7 KiB it did not read yet) when it
// is unbound: the hub disconnects it only once it acknowledged what it was sent (bounded),
// where it used to close the connection with the notice still queued behind the backlog.
func TestUnbindNoticeBehindBacklog(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	band, secret, bound := w.bindBand(t)
	bound.Close()
	big := `{"note":"` + strings.Repeat("x", 7000) + `"}`
	if _, err := w.h.Hub().SetSettings(ctx, w.annaID, band.DeviceID, json.RawMessage(big), 0); err != nil {
		t.Fatal(err)
	}
	noClientsConnected(t, w.h)
	c := rawDevice(t, w.h.MQTTAddr(), 4, band.DeviceID, secret, true)
	if code := c.subscribe(t, devices.DeviceFilter(band.DeviceID)); code != 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	before := metricValue(t, w.h, "devicehub_mqtt_messages_in_total")
	// 1,000 requests, ~7 MB of responses: more than the connection's TCP buffers hold, so
	// the rest waits in the broker's queue for the connection.
	const n, queued = 1000, 700
	for range n {
		c.publish(t, 0x30, devices.RequestTopic(band.DeviceID), nil, []byte(`{"id":"g","op":"settings_get"}`))
	}
	// Every request handled (its response queued) before the unbind; nothing read yet.
	apptest.Eventually(t, 30*time.Second, func() error {
		if got := metricValue(t, w.h, "devicehub_mqtt_messages_in_total"); got < before+queued {
			return fmt.Errorf("%v of %d requests handled", got-before, queued)
		}
		return nil
	})
	// The band starts reading as the unbind starts (mochi's publish of the notice waits
	// until the band's connection takes writes again).
	unbound := []byte(`"type":"` + devices.CmdUnbound + `"`)
	seen := make(chan bool, 1)
	go func() {
		got := false
		for {
			hdr, body, err := mqttwire.ReadPacket(c.c)
			if err != nil {
				seen <- got // closed by the hub
				return
			}
			if hdr>>4 == 3 && (hdr>>1)&3 == 1 {
				n := 2 + (int(body[0])<<8 | int(body[1]))
				_, _ = c.c.Write([]byte{0x40, 2, body[n], body[n+1]})
			}
			got = got || (hdr>>4 == 3 && bytes.Contains(body, unbound))
		}
	}()
	if err := w.anna.Unbind(testCtx(t), band.DeviceID, w.annaPassword); err != nil {
		t.Fatal(err)
	}
	if !<-seen {
		t.Fatal("connection closed before the unbound notice arrived")
	}
}

// metricValue reads one unlabelled metric from /metrics.
func metricValue(t *testing.T, h *apptest.Hub, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(get(t, h.URL()+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRevokedWhileOffline: Anna's phone holds a persistent session subscribed to its sync
// topic and is offline while her band is unbound (or, in the second case, unbound and bound
// by Boris, who uses it). When the phone comes back, its session resumes, and it gets
// nothing of the band: not the sample the band sent while the phone was away (before the
// unbind), nothing sent since, nothing retained. The probe is a sample of Anna's tablet sent
// after the phone is back: entries come in cursor order, so a band entry would come first.
func TestRevokedWhileOffline(t *testing.T) {
	for _, rebind := range []bool{false, true} {
		name := "unbound"
		if rebind {
			name = "bound by another account"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			ctx := testCtx(t)
			creds, secret, bound := w.bindBand(t)
			bound.Close()
			w.waitOffline(t, creds.DeviceID)
			w.waitOffline(t, w.annaPhone.DeviceID)
			anna := connectRaw(t, w.h.MQTTURL(), w.annaPhone.DeviceID, w.annaPhone.Secret, true)
			band := connectRaw(t, w.h.MQTTURL(), creds.DeviceID, secret, false)
			pair(t, anna, band, 1)
			band.telemetry(t, "steps", 1, `"count":10`)
			anna.ack(t, anna.waitFor(t, 1)[0].Cursor)
			anna.close()
			phoneID := w.annaPhone.DeviceID
			w.waitOffline(t, phoneID)

			// The persistent session: subscribed to everything of its own, then gone.
			p := rawDevice(t, w.h.MQTTAddr(), 4, phoneID, w.annaPhone.Secret, false)
			if code := p.subscribe(t, devices.DeviceFilter(phoneID)); code != 1 {
				t.Fatalf("SUBACK %#x", code)
			}
			p.c.Close()
			w.waitOffline(t, phoneID)

			band.telemetry(t, "steps", 2, `"count":20`) // while the phone is away
			if err := w.anna.Unbind(ctx, band.id, w.annaPassword); err != nil {
				t.Fatal(err)
			}
			if rebind {
				w.waitOffline(t, band.id)
				factory := w.connect(t, band.id, creds.Secret)
				code := bindCode(t, factory)
				if err := w.boris.Bind(ctx, band.id, code); err != nil {
					t.Fatal(err)
				}
				cmd := nextCommand(t, factory, devices.CmdBound)
				var args devices.BoundArgs
				_ = json.Unmarshal(cmd.Args, &args)
				factory.Close()
				w.waitOffline(t, band.id)
				nb := w.connect(t, band.id, args.Secret)
				for seq := uint64(3); seq <= 4; seq++ {
					_ = nb.PublishTelemetry(ctx, devices.StreamSteps, seq, time.Now(), map[string]int{"count": 5})
				}
			}

			p, code, _ := rawDial(t, w.h.MQTTAddr(), connSpec{version: 4, id: phoneID, user: phoneID, pass: w.annaPhone.Secret})
			if code != 0 {
				t.Fatalf("phone reconnect: CONNACK %d", code)
			}
			tablet, err := w.anna.RegisterDevice(ctx, "tablet", "Anna's tablet", "")
			if err != nil {
				t.Fatal(err)
			}
			tc := w.connect(t, tablet.DeviceID, tablet.Secret)
			if err := tc.PublishTelemetry(ctx, "location", 1, time.Now(), map[string]float64{"lat": 1, "lon": 2, "accuracy_m": 5}); err != nil {
				t.Fatal(err)
			}
			p.until(t, "the tablet's sample", func(hdr byte, body []byte) bool {
				if hdr>>4 != 3 {
					return false
				}
				if hdr&1 != 0 || bytes.Contains(body, []byte(band.id)) {
					t.Fatalf("the phone got something of the band after it was unbound: %#x %q", hdr, body)
				}
				return bytes.Contains(body, []byte(tablet.DeviceID))
			})
		})
	}
}
