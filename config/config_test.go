package config

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "devicehub.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestDefaults(t *testing.T) {
	c := Default()
	want := map[string]string{
		"broker.tcp_addr": "127.0.0.1:1883", "broker.ws_addr": "127.0.0.1:8083",
		"broker.allow_anonymous": "false", "http.addr": "127.0.0.1:8080",
		"store.path": "./data/devicehub.db", "tls.cert_file": "", "tls.key_file": "",
		"log.level": "info", "log.format": "text",
	}
	got := map[string]string{}
	for _, kv := range c.Redacted() {
		got[kv[0]] = kv[1]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(keyList()) {
		t.Errorf("Redacted shows %d keys, %d are declared", len(got), len(keyList()))
	}
}

// TestPrecedence: defaults < file < environment < flags, key by key.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "http:\n  addr: 127.0.0.1:1001\nlog:\n  level: warn\n  format: json\nstore:\n  path: /tmp/from-file.db\n")
	env := []string{"DEVICEHUB_HTTP_ADDR=127.0.0.1:1002", "DEVICEHUB_LOG_LEVEL=error", "PATH=/bin"}
	c, err := Load(file, flags(t, "--http-addr", "127.0.0.1:1003"), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != "127.0.0.1:1003" {
		t.Errorf("flag should win over env and file: http.addr = %s", c.HTTP.Addr)
	}
	if c.Log.Level != "error" {
		t.Errorf("env should win over file: log.level = %s", c.Log.Level)
	}
	if c.Log.Format != "json" || c.Store.Path != "/tmp/from-file.db" {
		t.Errorf("file should win over defaults: log.format=%s store.path=%s", c.Log.Format, c.Store.Path)
	}
	if c.Broker.TCPAddr != "127.0.0.1:1883" {
		t.Errorf("default kept: broker.tcp_addr = %s", c.Broker.TCPAddr)
	}
}

func TestEnvTurnsListenerOff(t *testing.T) {
	c, err := Load("", nil, []string{"DEVICEHUB_BROKER_WS_ADDR="})
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker.WSAddr != "" {
		t.Errorf("empty env should turn the WebSocket listener off, got %q", c.Broker.WSAddr)
	}
}

func TestBadValues(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cert := filepath.Join(t.TempDir(), "cert.pem")
	_ = os.WriteFile(cert, []byte("not a certificate"), 0o600)

	cases := []struct {
		name    string
		file    string
		env     []string
		args    []string
		check   bool
		wantKey string
		wantVal string
	}{
		{name: "unparseable address", args: []string{"--http-addr", "localhost"}, wantKey: "http.addr", wantVal: "localhost"},
		{name: "bad port", env: []string{"DEVICEHUB_BROKER_TCP_ADDR=127.0.0.1:99999"}, wantKey: "broker.tcp_addr", wantVal: "127.0.0.1:99999"},
		{name: "unknown key in file", file: "http:\n  adr: 127.0.0.1:1\n", wantKey: "http.adr", wantVal: "127.0.0.1:1"},
		{name: "unreadable cert", args: []string{"--tls-cert-file", cert, "--tls-key-file", cert}, wantKey: "tls.cert_file", wantVal: cert},
		{name: "cert without key", args: []string{"--tls-cert-file", cert}, wantKey: "tls.key_file", wantVal: ""},
		{name: "bad log level", env: []string{"DEVICEHUB_LOG_LEVEL=loud"}, wantKey: "log.level", wantVal: "loud"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantKey: "log.format", wantVal: "xml"},
		{name: "bad bool", env: []string{"DEVICEHUB_BROKER_ALLOW_ANONYMOUS=maybe"}, wantKey: "broker.allow_anonymous", wantVal: "maybe"},
		{name: "anonymous with public listener", args: []string{"--broker-allow-anonymous=true", "--broker-tcp-addr", "0.0.0.0:1883"}, wantKey: "broker.allow_anonymous", wantVal: "true"},
		{name: "bad synchronous", env: []string{"DEVICEHUB_STORE_SYNCHRONOUS=OFF"}, wantKey: "store.synchronous", wantVal: "OFF"},
		{name: "connect timeout too short", args: []string{"--broker-connect-timeout", "100ms"}, wantKey: "broker.connect_timeout", wantVal: "100ms"},
		{name: "connect timeout not a duration", env: []string{"DEVICEHUB_BROKER_CONNECT_TIMEOUT=10"}, wantKey: "broker.connect_timeout", wantVal: "10"},
		{name: "no unacked publishes", args: []string{"--broker-max-unacked-publishes", "0"}, wantKey: "broker.max_unacked_publishes", wantVal: "0"},
		{name: "more unacked publishes than packet IDs", env: []string{"DEVICEHUB_BROKER_MAX_UNACKED_PUBLISHES=70000"}, wantKey: "broker.max_unacked_publishes", wantVal: "70000"},
		{name: "port in use", args: []string{"--http-addr", busy.Addr().String()}, check: true, wantKey: "http.addr", wantVal: busy.Addr().String()},
		{name: "missing file", file: "\x00missing", wantKey: "config"},
		{name: "webhook url not a url", env: []string{"DEVICEHUB_NOTIFY_WEBHOOK_URL=://nope"}, wantKey: "notify.webhook_url", wantVal: "://nope"},
		{name: "webhook url relative", args: []string{"--notify-webhook-url", "/sms"}, wantKey: "notify.webhook_url", wantVal: "/[redacted]"},
		{name: "webhook url not http", args: []string{"--notify-webhook-url", "ftp://gw.example/sms"}, wantKey: "notify.webhook_url", wantVal: "ftp://gw.example/[redacted]"},
		{name: "webhook url without host", args: []string{"--notify-driver", "webhook", "--notify-webhook-url", "https:///sms"}, wantKey: "notify.webhook_url", wantVal: "https:///[redacted]"},
		{name: "webhook url bad port", args: []string{"--notify-webhook-url", "https://gw.example:70000/sms"}, wantKey: "notify.webhook_url", wantVal: "https://gw.example:70000/[redacted]"},
		{name: "webhook url required", args: []string{"--notify-driver", "webhook"}, wantKey: "notify.webhook_url"},
		{name: "public url no scheme", env: []string{"DEVICEHUB_NOTIFY_PUBLIC_URL=hub.example.com"}, wantKey: "notify.public_url", wantVal: "hub.example.com"},
		{name: "public url javascript", file: "notify:\n  public_url: javascript:alert(1)\n", wantKey: "notify.public_url", wantVal: "javascript:alert(1)"},
		{name: "public url with query", args: []string{"--notify-public-url", "https://hub.example/?x=1"}, wantKey: "notify.public_url", wantVal: "https://hub.example/?x=1"},
		{name: "smtp port zero", args: []string{"--notify-smtp-port", "0"}, wantKey: "notify.smtp.port", wantVal: "0"},
		{name: "smtp port too big", env: []string{"DEVICEHUB_NOTIFY_SMTP_PORT=65536"}, wantKey: "notify.smtp.port", wantVal: "65536"},
		{name: "smtp port negative", env: []string{"DEVICEHUB_NOTIFY_SMTP_PORT=-25"}, wantKey: "notify.smtp.port", wantVal: "-25"},
		{name: "smtp port not a number", env: []string{"DEVICEHUB_NOTIFY_SMTP_PORT=smtp"}, wantKey: "notify.smtp.port", wantVal: "smtp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.file == "\x00missing" {
				file = filepath.Join(t.TempDir(), "nope.yaml")
			} else if tc.file != "" {
				file = writeFile(t, tc.file)
			}
			c, err := Load(file, flags(t, tc.args...), tc.env)
			if err == nil && tc.check {
				err = c.Check()
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if ce.Key != tc.wantKey || (tc.wantVal != "" && ce.Value != tc.wantVal) {
				t.Fatalf("error names %s=%q, want %s=%q (%v)", ce.Key, ce.Value, tc.wantKey, tc.wantVal, err)
			}
			if !strings.Contains(err.Error(), tc.wantKey) || !strings.Contains(err.Error(), ce.Value) {
				t.Errorf("message %q does not name the key and the value", err.Error())
			}
		})
	}
}

func TestRedactsSecrets(t *testing.T) {
	c, err := Load("", nil, []string{"DEVICEHUB_ADMIN_TOKEN=s3cret-token", "DEVICEHUB_NOTIFY_SMTP_PASSWORD=s3cret-pw",
		"DEVICEHUB_NOTIFY_WEBHOOK_URL=https://gw.example/sms?key=s3cret-key"})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range c.Redacted() {
		if strings.Contains(kv[1], "s3cret") {
			t.Fatalf("%s shows the secret", kv[0])
		}
		if (kv[0] == "admin.token" || kv[0] == "notify.smtp.password") && kv[1] != "[redacted]" {
			t.Fatalf("%s = %q", kv[0], kv[1])
		}
	}
}

// TestGoodURLsAndPorts: the values the validation must keep accepting.
func TestGoodURLsAndPorts(t *testing.T) {
	for _, args := range [][]string{
		{"--notify-driver", "webhook", "--notify-webhook-url", "https://gw.example/sms?key=abc"},
		{"--notify-webhook-url", "http://127.0.0.1:9000/hook"},
		{"--notify-public-url", "https://hub.example.com/"},
		{"--notify-public-url", "http://[::1]:8080"},
		{"--notify-smtp-port", "1"},
		{"--notify-smtp-port", "65535"},
	} {
		if _, err := Load("", flags(t, args...), nil); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestWebhookURLSecretNotShown: the webhook URL may carry an API key in its user info, path
// or query; neither config print (Redacted) nor a validation error shows it.
func TestWebhookURLSecretNotShown(t *testing.T) {
	cases := []struct{ url, want string }{
		{"https://gw.example/sms?api_key=K3Y&to=x", "https://gw.example/[redacted]?api_key=[redacted]&to=[redacted]"},
		{"https://user:K3Y@gw.example", "https://user:[redacted]@gw.example"},
		{"https://K3Y@gw.example/", "https://[redacted]@gw.example/"},
		{"https://hooks.example/services/T0/B0/K3Y", "https://hooks.example/[redacted]"},
		{"https://gw.example", "https://gw.example"},
	}
	for _, tc := range cases {
		c, err := Load("", nil, []string{"DEVICEHUB_NOTIFY_WEBHOOK_URL=" + tc.url})
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		for _, kv := range c.Redacted() {
			if kv[0] == "notify.webhook_url" && kv[1] != tc.want {
				t.Errorf("notify.webhook_url shown as %q, want %q", kv[1], tc.want)
			}
		}
	}
	// A bad value is named in the error, with the secret parts hidden.
	for _, bad := range []string{"ftp://user:K3Y@gw.example/sms?key=K3Y", "gw.example/K3Y?key=K3Y", "https://gw.example:99999/K3Y", "https://user:K3Y@gw.exa mple"} {
		_, err := Load("", nil, []string{"DEVICEHUB_NOTIFY_WEBHOOK_URL=" + bad})
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != "notify.webhook_url" {
			t.Fatalf("%s: want an error naming notify.webhook_url, got %v", bad, err)
		}
		if strings.Contains(err.Error(), "K3Y") || !strings.Contains(err.Error(), "gw.exa") {
			t.Errorf("error %q shows the secret or not the value", err.Error())
		}
	}
}
