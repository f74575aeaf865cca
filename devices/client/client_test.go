package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
)

// anonymousHub starts a real hub whose broker lets clients without credentials (the client
// sends none when Secret is empty) use any topic: these tests are about the client library,
// not the hub's rules.
func anonymousHub(t *testing.T) *apptest.Hub {
	t.Helper()
	return apptest.Start(t, func(c *config.Config) { c.Broker.AllowAnonymous = true })
}

func connect(t *testing.T, broker, id string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Options{Broker: broker, DeviceID: id, CleanSession: true})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestRoundTrip(t *testing.T) {
	h := anonymousHub(t)
	for _, tc := range []struct{ name, url string }{{"tcp", h.MQTTURL()}, {"websocket", h.WSURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			phone := connect(t, tc.url, "phone-"+tc.name)
			band := connect(t, tc.url, "band-"+tc.name)

			got := make(chan []byte, 1)
			if err := phone.Subscribe(ctx, devices.TelemetryTopic("band-"+tc.name, "+"), 1, func(topic string, p []byte) {
				if topic == devices.TelemetryTopic("band-"+tc.name, devices.StreamSteps) {
					got <- p
				}
			}); err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			ts := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
			if err := band.PublishTelemetry(ctx, devices.StreamSteps, 7, ts, devices.StepsSample{Count: 42}); err != nil {
				t.Fatalf("publish telemetry: %v", err)
			}
			select {
			case p := <-got:
				tel, err := devices.ValidateTelemetry(devices.Band, devices.StreamSteps, p, ts)
				if err != nil {
					t.Fatalf("received payload %s does not validate: %v", p, err)
				}
				if tel.Seq != 7 || !tel.TS.Equal(ts) || string(tel.Body) != `{"count":42}` {
					t.Fatalf("received %+v body %s", tel, tel.Body)
				}
			case <-ctx.Done():
				t.Fatal("telemetry not delivered")
			}
		})
	}
}

// TestRequestAnswered plays the hub by hand: a second client answers on the device's response
// topic, which only an anonymous broker lets it do.
func TestRequestAnswered(t *testing.T) {
	h := anonymousHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dev := connect(t, h.MQTTURL(), "gadget1")
	fake := connect(t, h.MQTTURL(), "fakehub")
	var finished atomic.Bool // once the test has its answers, closing clients may fail a publish
	defer finished.Store(true)
	if err := fake.Subscribe(ctx, devices.RequestTopic("gadget1"), 1, func(_ string, p []byte) {
		r, err := devices.DecodeRequest(p)
		if err != nil {
			t.Errorf("device sent an invalid request %s: %v", p, err)
			return
		}
		res := devices.Response{ID: r.ID, OK: true, Result: json.RawMessage(`{"code":"123456","expires_at":"2026-03-01T10:10:00Z"}`)}
		if r.Op == devices.OpUnlock {
			res = devices.Response{ID: r.ID, Error: &devices.ErrorBody{Code: "unauthorized", Message: "wrong password", Field: "args.password"}}
		}
		b, _ := json.Marshal(res)
		// Not the test's ctx: the device can get this answer (and the test end, cancelling
		// ctx) before the fake hub's client has handled the PUBACK of it.
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer pcancel()
		if err := fake.Publish(pctx, devices.ResponseTopic("gadget1"), 1, false, b); err != nil && !finished.Load() {
			t.Errorf("answer: %v", err)
		}
	}); err != nil {
		t.Fatal(err)
	}

	raw, err := dev.Request(ctx, devices.OpBindCode, nil)
	if err != nil {
		t.Fatalf("bind_code: %v", err)
	}
	var res devices.BindCodeResult
	if err := json.Unmarshal(raw, &res); err != nil || res.Code != "123456" {
		t.Fatalf("result %s: %+v %v", raw, res, err)
	}

	_, err = dev.Request(ctx, devices.OpUnlock, devices.UnlockArgs{Password: "nope"})
	var re *client.RemoteError
	if !errors.As(err, &re) || re.Code != "unauthorized" || re.Field != "args.password" {
		t.Fatalf("unlock: got %v, want a RemoteError unauthorized on args.password", err)
	}
}

func TestRequestTimesOut(t *testing.T) {
	h := anonymousHub(t)
	dev := connect(t, h.MQTTURL(), "lonely")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := dev.Request(ctx, devices.OpBindCode, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	// The client is still usable afterwards.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := dev.Publish(ctx2, devices.RequestTopic("lonely"), 1, false, []byte(`{}`)); err != nil {
		t.Fatalf("publish after timeout: %v", err)
	}
}

func TestCommandsDelivered(t *testing.T) {
	h := anonymousHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dev := connect(t, h.MQTTURL(), "band9")
	fake := connect(t, h.MQTTURL(), "fakehub") // stands in for the hub; the anonymous broker lets it
	cmd := devices.Command{ID: "cmd1", Type: devices.CmdRing, IssuedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	b, _ := json.Marshal(cmd)
	if err := fake.Publish(ctx, devices.CommandTopic("band9"), 1, false, b); err != nil {
		t.Fatalf("hub publish: %v", err)
	}
	select {
	case got := <-dev.Commands():
		if got.ID != "cmd1" || got.Type != devices.CmdRing || !got.IssuedAt.Equal(cmd.IssuedAt) {
			t.Fatalf("got %+v", got)
		}
	case <-ctx.Done():
		t.Fatal("command not delivered")
	}
	dev.Close()
	if _, open := <-dev.Commands(); open {
		t.Fatal("Commands channel still open after Close")
	}
}

func TestSubscribeRefused(t *testing.T) {
	h := anonymousHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dev := connect(t, h.MQTTURL(), "d1")
	// paho checks only whole "#" levels, so "#x" reaches the broker, which answers SUBACK 0x80.
	err := dev.Subscribe(ctx, "devices/d1/#x", 1, func(string, []byte) {})
	var se *client.SubscribeError
	if !errors.As(err, &se) || se.Code < 0x80 {
		t.Fatalf("got %v, want a SubscribeError", err)
	}
}

func TestConnectRefused(t *testing.T) {
	h := apptest.Start(t, nil) // no anonymous access, and no device has credentials yet
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Connect(ctx, client.Options{Broker: h.MQTTURL(), DeviceID: "d1", Secret: "wrong"})
	if !errors.Is(err, client.ErrNotAuthorized) {
		t.Fatalf("got %v, want ErrNotAuthorized", err)
	}
}

func TestConnectOptionsChecked(t *testing.T) {
	ctx := context.Background()
	if _, err := client.Connect(ctx, client.Options{Broker: "tcp://127.0.0.1:1", DeviceID: "d/#"}); err == nil {
		t.Error("accepted a device ID with a wildcard")
	}
	if _, err := client.Connect(ctx, client.Options{Broker: "tcp://127.0.0.1:1", DeviceID: "d1", ProtocolVersion: 5}); err == nil {
		t.Error("accepted protocol version 5")
	}
}

// TestResubscribeAfterReconnect: the hub restarts on the same address while a clean-session
// client is connected; paho reconnects, and the filter the client subscribed to with
// Subscribe is subscribed again, so messages on it arrive as before. Without it a phone lost
// its sync subscription, and everything relayed to it, at every hub restart.
func TestResubscribeAfterReconnect(t *testing.T) {
	h := anonymousHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	phone := connect(t, h.MQTTURL(), "phone-r")
	got := make(chan string, 16)
	if err := phone.Subscribe(ctx, "devices/band-r/telemetry/+", 1, func(_ string, p []byte) { got <- string(p) }); err != nil {
		t.Fatal(err)
	}
	addr, dir := h.MQTTAddr(), h.Dir
	h.Stop(t)
	h = apptest.StartIn(t, dir, func(c *config.Config) { c.Broker.AllowAnonymous = true; c.Broker.TCPAddr = addr })
	apptest.Eventually(t, 20*time.Second, func() error {
		if !phone.Connected() {
			return errors.New("phone not reconnected yet")
		}
		return nil
	})
	band := connect(t, h.MQTTURL(), "band-r")
	// The resubscription races the first publishes: send until one arrives.
	apptest.Eventually(t, 10*time.Second, func() error {
		if err := band.Publish(ctx, "devices/band-r/telemetry/steps", 1, false, []byte("after restart")); err != nil {
			return err
		}
		select {
		case p := <-got:
			if p != "after restart" {
				return errors.New("got " + p)
			}
			return nil
		case <-time.After(200 * time.Millisecond):
			return errors.New("nothing delivered to the resubscribed filter")
		}
	})
}
