package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/devicehub/devicehub/api"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/notify"
	"github.com/devicehub/devicehub/store/sqlite"
)

const testPassword = "correct horse battery"

// client talks to a running hub over HTTP.
type client struct {
	t     testing.TB
	base  string
	admin string
	hc    *http.Client
}

func newClient(t testing.TB, base, admin string) *client {
	return &client{t: t, base: base, admin: admin, hc: &http.Client{Timeout: 30 * time.Second}}
}

// startHub runs the whole app (apptest) and returns a client for it.
func startHub(t *testing.T) *client {
	h := apptest.Start(t, nil)
	return newClient(t, h.URL(), h.Config.Admin.Token)
}

// from returns a client of the same hub whose connections come from another loopback
// address (127.0.0.0/8 is all loopback on Linux), so tests can be several client IPs. It
// skips the test where the system cannot bind that address.
func (c *client) from(ip string) *client {
	c.t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		c.t.Skipf("cannot use loopback address %s as a second client IP: %v", ip, err)
	}
	l.Close()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	c.t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	return &client{t: c.t, base: c.base, admin: c.admin, hc: hc}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startStack runs the API on a real HTTP server and a real SQLite file, like the app, but
// with a fake clock and the given account options.
func startStack(t *testing.T, opts hub.AccountOptions) (*client, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "devicehub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ob := notify.New(notify.Options{Store: db, Clock: clk})
	h := hub.New(hub.Options{Store: db, Notifier: ob, Clock: clk, Accounts: opts})
	srv := httptest.NewServer(api.New(api.Options{Hub: h, AdminToken: "adm"}))
	t.Cleanup(srv.Close)
	return newClient(t, srv.URL, "adm"), clk
}

type resp struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r resp) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (r resp) errField() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["field"].(string)
	return s
}

func (r resp) str(k string) string { s, _ := r.body[k].(string); return s }

func (c *client) do(method, path, token string, body any) resp {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &r.body)
	}
	return r
}

func (c *client) want(r resp, status int) resp {
	c.t.Helper()
	if r.status != status {
		c.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

// challenge fetches a puzzle for identifier and solves it.
func (c *client) challenge(identifier string) json.RawMessage {
	c.t.Helper()
	r := c.want(c.do("POST", "/api/v1/challenges", "", map[string]string{"identifier": identifier}), http.StatusCreated)
	var ch hub.PowChallenge
	if err := json.Unmarshal(r.raw, &ch); err != nil {
		c.t.Fatal(err)
	}
	ans, err := hub.SolveChallenge(context.Background(), ch)
	if err != nil {
		c.t.Fatal(err)
	}
	raw, _ := json.Marshal(ans)
	return raw
}

type message struct {
	ID, Channel, To, Subject, Body, Status string
	Attempts                               int
}

func (c *client) outbox(to string) []message {
	c.t.Helper()
	r := c.want(c.do("GET", "/api/v1/admin/outbox?to="+url.QueryEscape(to), c.admin, nil), http.StatusOK)
	var out struct{ Messages []message }
	if err := json.Unmarshal(r.raw, &out); err != nil {
		c.t.Fatal(err)
	}
	return out.Messages
}

var (
	codeRE  = regexp.MustCompile(`Your devicehub code is (\d{6})`)
	tokenRE = regexp.MustCompile(`confirm\?token=([a-z2-7]+)`)
)

// lastCode is the code in the newest message to `to`.
func (c *client) lastCode(to string) string {
	c.t.Helper()
	msgs := c.outbox(to)
	if len(msgs) == 0 {
		c.t.Fatalf("no message to %s in the outbox", to)
	}
	m := codeRE.FindStringSubmatch(msgs[0].Body)
	if m == nil {
		c.t.Fatalf("no code in the newest message to %s: %q", to, msgs[0].Body)
	}
	return m[1]
}

func (c *client) register(id, password string) resp {
	c.t.Helper()
	return c.do("POST", "/api/v1/accounts", "", map[string]any{"identifier": id, "password": password, "challenge": c.challenge(id)})
}

func (c *client) login(id, password string) resp {
	c.t.Helper()
	return c.do("POST", "/api/v1/sessions", "", map[string]any{"identifier": id, "password": password, "challenge": c.challenge(id)})
}

// signUp registers, confirms with the code and logs in; it returns the session token.
func (c *client) signUp(id string) string {
	c.t.Helper()
	c.want(c.register(id, testPassword), http.StatusAccepted)
	c.want(c.do("POST", "/api/v1/accounts/confirm", "", map[string]string{"identifier": id, "code": c.lastCode(id)}), http.StatusOK)
	return c.want(c.login(id, testPassword), http.StatusCreated).str("token")
}
