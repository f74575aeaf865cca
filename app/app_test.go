package app_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/app"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/store/sqlite"
)

func anonymous(c *config.Config) { c.Broker.AllowAnonymous = true }

// connect opens a paho client; clean=false keeps a persistent session.
func connect(t *testing.T, url, id string, clean bool, onMsg paho.MessageHandler) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetPassword("x").
		SetCleanSession(clean).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(false)
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func wait(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("mqtt operation timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

// TestConnectRefusedWithoutCredentials: deny-by-default. A client that presents no
// credentials at all, and one that presents an unknown device's, both get CONNACK 0x05 (not
// authorized: mochi's v5 0x86 "bad user name or password" mapped to v3.1.1), each counted
// under its own reason in /metrics.
func TestConnectRefusedWithoutCredentials(t *testing.T) {
	h := apptest.Start(t, nil)
	for _, tc := range []struct {
		name, id, user, pass, reason string
	}{
		{name: "no credentials", id: "nobody", reason: "no_credentials_accepted"},
		{name: "unknown device", id: "stranger", user: "stranger", pass: "x", reason: "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := paho.NewClientOptions().AddBroker(h.MQTTURL()).SetClientID(tc.id).
				SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
			if tc.user != "" {
				o.SetUsername(tc.user).SetPassword(tc.pass)
			}
			c := paho.NewClient(o)
			tok := c.Connect()
			if !tok.WaitTimeout(10 * time.Second) {
				t.Fatal("connect timed out")
			}
			if tok.Error() == nil {
				c.Disconnect(0)
				t.Fatal("CONNECT accepted")
			}
			if code := tok.(*paho.ConnectToken).ReturnCode(); code != packets.Err3NotAuthorized.Code {
				t.Fatalf("CONNACK return code = %#x, want %#x (not authorized): %v", code, packets.Err3NotAuthorized.Code, tok.Error())
			}
			want := fmt.Sprintf(`devicehub_auth_failures_total{reason=%q,transport="mqtt"} 1`, tc.reason)
			if body := get(t, h.URL()+"/metrics"); !strings.Contains(body, want) {
				t.Errorf("want %s in /metrics:\n%s", want, grep(body, "auth_failures"))
			}
		})
	}
}

func TestAnonymousRoundTrip(t *testing.T) {
	h := apptest.Start(t, anonymous)
	for _, tc := range []struct{ name, url string }{{"tcp", h.MQTTURL()}, {"websocket", h.WSURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan string, 1)
			sub, err := connect(t, tc.url, "sub-"+tc.name, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			wait(t, sub.Subscribe("rt/"+tc.name, 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }))
			pub, err := connect(t, tc.url, "pub-"+tc.name, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			wait(t, pub.Publish("rt/"+tc.name, 1, false, "hello "+tc.name))
			select {
			case m := <-got:
				if m != "hello "+tc.name {
					t.Fatalf("got %q", m)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("message not delivered")
			}
		})
	}
	body := get(t, h.URL()+"/metrics")
	for _, name := range []string{"devicehub_mqtt_clients_connected", "devicehub_mqtt_messages_in_total", "devicehub_mqtt_messages_out_total", "devicehub_store_operation_seconds"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestHealthAndReady(t *testing.T) {
	h := apptest.Start(t, nil)
	if b := get(t, h.URL()+"/healthz"); b != "ok\n" {
		t.Errorf("healthz = %q", b)
	}
	if b := get(t, h.URL()+"/readyz"); b != "ready\n" {
		t.Errorf("readyz = %q", b)
	}
}

// TestRestartKeepsQueuedMessage: a QoS 1 message published to an offline persistent-session
// client is delivered after the hub process is killed (SIGKILL) and started again.
func TestRestartKeepsQueuedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real hub process")
	}
	bin := apptest.BuildBinary(t)
	dir := t.TempDir()
	p := apptest.StartProcess(t, bin, dir, "--broker-allow-anonymous=true")

	sub, err := connect(t, "tcp://"+p.MQTTAddr, "phone-1", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, sub.Subscribe("inbox/phone-1", 1, nil))
	sub.Disconnect(100)

	pub, err := connect(t, "tcp://"+p.MQTTAddr, "band-1", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, pub.Publish("inbox/phone-1", 1, false, "queued while offline"))
	pub.Disconnect(100)
	// mochi acknowledges a publish before it fans it out, so wait until the message queued for
	// the offline phone is committed (the hub's own telemetry commits before the ack instead).
	db, err := sqlite.Open(context.Background(), dir+"/devicehub.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	apptest.Eventually(t, 10*time.Second, func() error {
		v, err := db.ListBrokerState(context.Background(), "IFM")
		if err == nil && !strings.Contains(fmt.Sprintf("%s", v), "phone-1") {
			all, _ := db.ListBrokerState(context.Background(), "SUB")
			err = fmt.Errorf("message for phone-1 not persisted yet (in flight: %s; subscriptions: %s)\n%s", v, all, p.Logs())
		}
		return err
	})
	db.Close()
	p.Kill()

	p2 := apptest.StartProcess(t, bin, dir, "--broker-allow-anonymous=true")
	got := make(chan string, 4)
	if _, err := connect(t, "tcp://"+p2.MQTTAddr, "phone-1", false, func(_ paho.Client, m paho.Message) {
		got <- m.Topic() + " " + string(m.Payload())
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "inbox/phone-1 queued while offline" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("queued message not delivered after restart; hub logs:\n%s", p2.Logs())
	}
}

// TestGracefulShutdown: SIGTERM ends the process with status 0 and leaves a database that
// opens cleanly and passes an integrity check.
func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real hub process")
	}
	bin := apptest.BuildBinary(t)
	dir := t.TempDir()
	p := apptest.StartProcess(t, bin, dir, "--broker-allow-anonymous=true")
	c, err := connect(t, "tcp://"+p.MQTTAddr, "keeper", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, c.Subscribe("keep/#", 1, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := p.Terminate(ctx)
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, %v; logs:\n%s", code, err, p.Logs())
	}
	db, err := sqlite.Open(context.Background(), dir+"/devicehub.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.IntegrityCheck(context.Background())
	if err != nil || res != "ok" {
		t.Fatalf("integrity_check = %q, %v", res, err)
	}
	subs, err := db.ListBrokerState(context.Background(), "SUB")
	if err != nil || len(subs) != 1 {
		t.Fatalf("persisted subscriptions = %d, %v", len(subs), err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := apptest.Get(t, url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(strings.Join(out, "\n"))
}

// TestNewPortInUse: a listener address that is taken fails app.New with a *config.Error that
// names the key and the address (New used to call closeAll on the nil *App it was returning,
// which panicked).
func TestNewPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, key := range []string{"broker.tcp_addr", "broker.ws_addr", "http.addr"} {
		t.Run(key, func(t *testing.T) {
			cfg := apptest.Config(t.TempDir())
			switch key {
			case "broker.tcp_addr":
				cfg.Broker.TCPAddr = busy.Addr().String()
			case "broker.ws_addr":
				cfg.Broker.WSAddr = busy.Addr().String()
			case "http.addr":
				cfg.HTTP.Addr = busy.Addr().String()
			}
			a, err := app.New(context.Background(), cfg, nil)
			if err == nil {
				_ = a.Shutdown(context.Background())
				t.Fatal("hub started on a port in use")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != key || ce.Value != busy.Addr().String() {
				t.Fatalf("want a config error naming %s=%s, got %v", key, busy.Addr(), err)
			}
		})
	}
}

// TestShutdownStopsAcceptingFirst: shutdown stops accepting on every listener (MQTT, MQTT
// over WebSocket, HTTP) while an HTTP request is still in flight, lets that request finish
// with its answer, and only then completes. The broker used to be closed after the HTTP
// shutdown, so MQTT kept accepting for as long as a slow request held it up.
func TestShutdownStopsAcceptingFirst(t *testing.T) {
	h := apptest.Start(t, anonymous)
	// A request whose handler is reading a body the client has not finished sending: with
	// Expect: 100-continue, the server's "100 Continue" says the handler is running.
	conn, err := net.Dial("tcp", h.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	body := `{"identifier":"anna@example.com"}`
	fmt.Fprintf(conn, "POST /api/v1/challenges HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "\r\n" {
		t.Fatalf("after 100 Continue: %q %v", line, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(ctx) }()
	apptest.Eventually(t, 10*time.Second, func() error {
		for name, addr := range map[string]string{"mqtt": h.MQTTAddr(), "websocket": h.WSAddr(), "http": h.HTTPAddr()} {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return fmt.Errorf("%s listener %s still accepts during shutdown", name, addr)
			}
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("shutdown completed before the request in flight did: %v", err)
	default:
	}

	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("the request in flight got %d, want 201", resp.StatusCode)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("shutdown did not complete after the last request")
	}
}
