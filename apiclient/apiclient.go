// Package apiclient is a Go client for devicehub's HTTP API (docs/api.md): what the
// simulator, the end-to-end tests and any Go program acting as an owner's app use to
// register, sign in, manage devices and read the admin outbox.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// Error is an API error answer.
type Error struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
	// CurrentVersion comes with stale_version.
	CurrentVersion *int64 `json:"current_version"`
}

func (e *Error) Error() string {
	s := fmt.Sprintf("http %d %s: %s", e.Status, e.Code, e.Message)
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	return s
}

// Code returns the API error code of err, or "".
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Client talks to one hub. Token, when set, is sent as the bearer token.
type Client struct {
	Base       string // e.g. http://127.0.0.1:8080
	Token      string
	AdminToken string
	HTTP       *http.Client
}

// New returns a client for base with a bounded timeout.
func New(base string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// WithToken returns a copy that authenticates with token.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.Token = token
	return &cp
}

// Do sends a JSON request and decodes a JSON answer into out (which may be nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, c.Token, in, out)
}

func (c *Client) do(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var eb struct {
			Error Error `json:"error"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
			return &Error{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(b))}
		}
		eb.Error.Status = resp.StatusCode
		return &eb.Error
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s %s answer: %w", method, path, err)
		}
	}
	return nil
}

// Challenge fetches and solves an anti-automation puzzle.
func (c *Client) Challenge(ctx context.Context, identifier string) (json.RawMessage, error) {
	var pz hub.PowChallenge
	if err := c.do(ctx, http.MethodPost, "/api/v1/challenges", "", map[string]string{"identifier": identifier}, &pz); err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	ans, err := hub.SolveChallenge(ctx, pz)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ans)
}

// identifierBody builds the identifier part of an account request.
func identifierBody(identifier string) map[string]any {
	if strings.Contains(identifier, "@") {
		return map[string]any{"email": identifier}
	}
	return map[string]any{"phone": identifier}
}

// Register starts a registration (solving the challenge).
func (c *Client) Register(ctx context.Context, identifier, password string) error {
	ch, err := c.Challenge(ctx, identifier)
	if err != nil {
		return err
	}
	b := identifierBody(identifier)
	b["password"], b["challenge"] = password, ch
	return c.do(ctx, http.MethodPost, "/api/v1/accounts", "", b, nil)
}

// Confirm confirms a registration with the code that was sent.
func (c *Client) Confirm(ctx context.Context, identifier, code string) error {
	b := identifierBody(identifier)
	b["code"] = code
	return c.do(ctx, http.MethodPost, "/api/v1/accounts/confirm", "", b, nil)
}

// Login is a signed-in session.
type Login struct {
	Token     string `json:"token"`
	AccountID string `json:"account_id"`
}

// Login signs in (solving the challenge).
func (c *Client) Login(ctx context.Context, identifier, password string) (Login, error) {
	ch, err := c.Challenge(ctx, identifier)
	if err != nil {
		return Login{}, err
	}
	b := map[string]any{"identifier": identifier, "password": password, "challenge": ch}
	var l Login
	err = c.do(ctx, http.MethodPost, "/api/v1/sessions", "", b, &l)
	return l, err
}

// Forgot asks for a password reset code.
func (c *Client) Forgot(ctx context.Context, identifier string) error {
	ch, err := c.Challenge(ctx, identifier)
	if err != nil {
		return err
	}
	b := identifierBody(identifier)
	b["challenge"] = ch
	return c.do(ctx, http.MethodPost, "/api/v1/password/forgot", "", b, nil)
}

// Reset sets a new password with a reset code.
func (c *Client) Reset(ctx context.Context, identifier, code, password string) error {
	b := identifierBody(identifier)
	b["code"], b["password"] = code, password
	return c.do(ctx, http.MethodPost, "/api/v1/password/reset", "", b, nil)
}

// OutboxMessage is one message from the admin outbox.
type OutboxMessage struct {
	ID        string    `json:"id"`
	Channel   string    `json:"channel"`
	To        string    `json:"to"`
	Subject   string    `json:"subject"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// Outbox reads the newest outbox messages to an identifier (admin token required).
func (c *Client) Outbox(ctx context.Context, to string) ([]OutboxMessage, error) {
	var out struct {
		Messages []OutboxMessage `json:"messages"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/admin/outbox?to="+url.QueryEscape(to), c.AdminToken, nil, &out)
	return out.Messages, err
}

var codeRE = regexp.MustCompile(`\b(\d{6})\b`)

// LatestCode returns the 6-digit code of the newest outbox message to identifier whose
// body contains want (e.g. "confirm" or "reset"; "" for any), polling until ctx ends.
func (c *Client) LatestCode(ctx context.Context, identifier, want string) (string, error) {
	for {
		msgs, err := c.Outbox(ctx, identifier)
		if err != nil {
			return "", err
		}
		for _, m := range msgs { // newest first
			if want != "" && !strings.Contains(strings.ToLower(m.Subject+" "+m.Body), want) {
				continue
			}
			if mm := codeRE.FindStringSubmatch(m.Body); mm != nil {
				return mm[1], nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no code for %s in the outbox: %w", identifier, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CreateAccount registers, confirms from the outbox and signs in: the whole seed flow.
func (c *Client) CreateAccount(ctx context.Context, identifier, password string) (Login, error) {
	if err := c.Register(ctx, identifier, password); err != nil {
		return Login{}, fmt.Errorf("register: %w", err)
	}
	code, err := c.LatestCode(ctx, identifier, "")
	if err != nil {
		return Login{}, err
	}
	if err := c.Confirm(ctx, identifier, code); err != nil {
		return Login{}, fmt.Errorf("confirm: %w", err)
	}
	return c.Login(ctx, identifier, password)
}

// Credentials are a device's MQTT login.
type Credentials struct {
	DeviceID  string `json:"device_id"`
	Type      string `json:"type"`
	Secret    string `json:"secret"`
	AccountID string `json:"account_id,omitempty"`
}

// RegisterDevice registers the phone or tablet the owner signed in on.
func (c *Client) RegisterDevice(ctx context.Context, typ, name, hardwareID string) (Credentials, error) {
	var cr Credentials
	err := c.Do(ctx, http.MethodPost, "/api/v1/devices", map[string]string{"type": typ, "name": name, "hardware_id": hardwareID}, &cr)
	return cr, err
}

// Provision creates factory gadgets (admin token required).
func (c *Client) Provision(ctx context.Context, typ string, count int) ([]Credentials, error) {
	var out struct {
		Devices []Credentials `json:"devices"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/admin/devices", c.AdminToken, map[string]any{"type": typ, "count": count}, &out)
	return out.Devices, err
}

// Bind binds a gadget by its code.
func (c *Client) Bind(ctx context.Context, deviceID, code string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/devices/bind", map[string]string{"device_id": deviceID, "code": code}, nil)
}

// Unbind signs a device out of the account with the password.
func (c *Client) Unbind(ctx context.Context, deviceID, password string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(deviceID)+"/unbind", map[string]string{"password": password}, nil)
}

// Device is a device as the owner sees it.
type Device struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Name      string `json:"name"`
	AccountID string `json:"account_id"`
	Online    bool   `json:"online"`
}

// Devices lists the account's devices.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	var out struct {
		Devices []Device `json:"devices"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/devices", nil, &out)
	return out.Devices, err
}

// AuditEntry is one audit log entry.
type AuditEntry struct {
	DeviceID string    `json:"device_id"`
	Event    string    `json:"event"`
	Detail   string    `json:"detail"`
	Actor    string    `json:"actor"`
	At       time.Time `json:"at"`
}

// Audit reads the account's audit log, newest first.
func (c *Client) Audit(ctx context.Context) ([]AuditEntry, error) {
	var out struct {
		Entries []AuditEntry `json:"entries"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/audit", nil, &out)
	return out.Entries, err
}
