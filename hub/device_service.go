package hub

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/devicehub/devicehub/devices"
)

const (
	bindCodeTTL      = 5 * time.Minute
	bindCodeMaxTries = 5
	// A device secret is 160 random bits: far past guessing, so a fast keyed hash (HMAC-SHA256)
	// is enough, and ten thousand devices reconnecting after a restart do not queue behind a
	// slow password hash. argon2id is for people's passwords.
	deviceSecretBytes = 20
	maxProvision      = 10000
	deviceNameMax     = 64
)

// deviceState is the hub's in-memory help for devices: the transport it was attached to, the
// hashing key, and the login throttles.
type deviceState struct {
	mu        sync.RWMutex
	publisher Publisher
	sessions  Sessions

	keyMu sync.Mutex
	key   []byte

	authByID *failureCounter
	authByIP *failureCounter
}

func newDeviceState() *deviceState {
	return &deviceState{authByID: newFailureCounter(15 * time.Minute), authByIP: newFailureCounter(15 * time.Minute)}
}

// AttachTransport tells the hub how to reach devices: the broker publishes for it and drops
// sessions. It is set once at start, after the broker exists.
func (h *Hub) AttachTransport(p Publisher, s Sessions) {
	h.dev.mu.Lock()
	defer h.dev.mu.Unlock()
	h.dev.publisher, h.dev.sessions = p, s
}

func (h *Hub) transport() (Publisher, Sessions) {
	h.dev.mu.RLock()
	defer h.dev.mu.RUnlock()
	return h.dev.publisher, h.dev.sessions
}

// deviceKey is the HMAC key for device secrets, bind codes and hardware IDs, read once.
func (h *Hub) deviceKey(ctx context.Context) ([]byte, error) {
	h.dev.keyMu.Lock()
	defer h.dev.keyMu.Unlock()
	if h.dev.key == nil {
		k, err := h.store.ServerKey(ctx, "devices")
		if err != nil {
			return nil, fmt.Errorf("device key: %w", err)
		}
		h.dev.key = k
	}
	return h.dev.key, nil
}

func (h *Hub) mac(ctx context.Context, parts ...string) ([]byte, error) {
	k, err := h.deviceKey(ctx)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, k)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0}) // separator: parts cannot run into each other
	}
	return m.Sum(nil), nil
}

func (h *Hub) audit(ctx context.Context, e AuditEntry) {
	if e.AccountID == "" {
		return
	}
	e.At = h.clock.Now()
	if err := h.store.AppendAudit(ctx, e); err != nil {
		h.log.Error("audit", "event", e.Event, "device", e.DeviceID, "error", err)
	}
}

// ProvisionDevices creates n gadgets of type t at the factory and returns their credentials,
// which are shown only this once.
func (h *Hub) ProvisionDevices(ctx context.Context, t devices.Type, n int) ([]Credentials, error) {
	if _, ok := devices.Info(t); !ok {
		return nil, FieldError(EInvalid, "type", "unknown device type %q (one of phone, tablet, band, scale, router)", t)
	}
	if n < 1 || n > maxProvision {
		return nil, FieldError(EInvalid, "count", "count must be between 1 and %d", maxProvision)
	}
	now := h.clock.Now()
	out := make([]Credentials, n)
	ds := make([]Device, n)
	for i := range n {
		id, secret := NewID("dev"), RandomToken(deviceSecretBytes)
		hash, err := h.mac(ctx, "factory", id, secret)
		if err != nil {
			return nil, err
		}
		ds[i] = Device{ID: id, Type: t, Name: string(t), FactoryHash: hash, CreatedAt: now}
		out[i] = Credentials{DeviceID: id, Type: t, Secret: secret}
	}
	if err := h.store.CreateDevices(ctx, ds); err != nil {
		return nil, err
	}
	return out, nil
}

// RegisterController registers the phone or tablet the owner signed in on, binds it to the
// account and returns its MQTT credentials once. hardwareID (optional) identifies the
// handset across wipes: a handset bound to another account is refused with device_locked.
func (h *Hub) RegisterController(ctx context.Context, accountID string, t devices.Type, name, hardwareID string) (Credentials, error) {
	if !devices.IsController(t) {
		return Credentials{}, FieldError(EInvalid, "type", "only phones and tablets register by signing in; gadgets are bound with the code they show")
	}
	name, err := cleanName(name, string(t))
	if err != nil {
		return Credentials{}, err
	}
	if len(hardwareID) > 128 {
		return Credentials{}, FieldError(EInvalid, "hardware_id", "hardware_id is at most 128 characters")
	}
	now := h.clock.Now()
	secret := RandomToken(deviceSecretBytes)
	if hardwareID != "" {
		hw, err := h.mac(ctx, "hardware", hardwareID)
		if err != nil {
			return Credentials{}, err
		}
		d, err := h.store.DeviceByHardware(ctx, hw)
		switch {
		case err == nil:
			if d.AccountID != "" && d.AccountID != accountID {
				h.audit(ctx, AuditEntry{AccountID: d.AccountID, DeviceID: d.ID, Event: AuditBindRefused, Detail: "another account tried to register this device", Actor: "http"})
				h.audit(ctx, AuditEntry{AccountID: accountID, Event: AuditBindRefused, Detail: "device_locked", Actor: "http"})
				return Credentials{}, Errorf(EDeviceLocked, "this device is locked to its owner's account; the owner must sign it out first")
			}
			if err := h.rebind(ctx, d, accountID, secret, now); err != nil {
				return Credentials{}, err
			}
			return Credentials{DeviceID: d.ID, Type: d.Type, Secret: secret, AccountID: accountID}, nil
		case ErrorCode(err) != ENotFound:
			return Credentials{}, err
		}
		return h.createController(ctx, accountID, t, name, secret, hw, now)
	}
	return h.createController(ctx, accountID, t, name, secret, nil, now)
}

func (h *Hub) createController(ctx context.Context, accountID string, t devices.Type, name, secret string, hw []byte, now time.Time) (Credentials, error) {
	id := NewID("dev")
	sh, err := h.mac(ctx, "binding", id, secret)
	if err != nil {
		return Credentials{}, err
	}
	d := Device{ID: id, Type: t, Name: name, AccountID: accountID, SecretHash: sh, HardwareHash: hw, CreatedAt: now, BoundAt: now}
	if err := h.store.CreateDevices(ctx, []Device{d}); err != nil {
		return Credentials{}, err
	}
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: id, Event: AuditDeviceRegistered, Detail: string(t) + " " + name, Actor: "http"})
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: id, Event: AuditCredentialsIssued, Actor: "http"})
	return Credentials{DeviceID: id, Type: t, Secret: secret, AccountID: accountID}, nil
}

// rebind gives a device (already ours, or unbound) a fresh binding secret, which revokes the
// old one and drops any session that used it.
func (h *Hub) rebind(ctx context.Context, d Device, accountID, secret string, now time.Time) error {
	sh, err := h.mac(ctx, "binding", d.ID, secret)
	if err != nil {
		return err
	}
	if err := h.store.BindDevice(ctx, d.ID, accountID, sh, nil, now); err != nil {
		return err
	}
	if _, s := h.transport(); s != nil && d.SecretHash != nil {
		s.Drop(d.ID)
	}
	event := AuditBind
	if d.AccountID == accountID {
		event = AuditCredentialsIssued
	}
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: d.ID, Event: event, Actor: "http"})
	return nil
}

// AuthenticateDevice checks an MQTT login (username = client ID = device ID). The binding
// secret gives the device its full identity; the factory secret gives only an unbound
// identity, whatever the device's binding, which is enough to ask for a bind code. Failures
// are throttled per device ID and per IP with a growing back-off (never a permanent lock).
func (h *Hub) AuthenticateDevice(ctx context.Context, deviceID, secret, remoteIP string) (devices.Identity, error) {
	now := h.clock.Now()
	refused := Errorf(EUnauthorized, "bad device ID or secret")
	// Attempts during the wait are refused without being counted: an attacker who keeps
	// trying cannot stretch the wait and lock the real device out.
	if d := max(waitLeft(h.dev.authByID.get(deviceID, now), 5, now), waitLeft(h.dev.authByIP.get(remoteIP, now), 20, now)); d > 0 {
		return devices.Identity{}, rateLimited(d, "too many failed logins; wait before trying again")
	}
	fail := func() (devices.Identity, error) {
		h.dev.authByID.add(deviceID, now)
		h.dev.authByIP.add(remoteIP, now)
		return devices.Identity{}, refused
	}
	if devices.ValidIdentifier(deviceID) != nil || len(secret) == 0 || len(secret) > 256 {
		return fail()
	}
	d, err := h.store.DeviceByID(ctx, deviceID)
	if err != nil && ErrorCode(err) != ENotFound {
		return devices.Identity{}, err
	}
	// The hashes are computed whether or not the device exists, so an unknown ID costs the
	// same as a wrong secret.
	binding, err1 := h.mac(ctx, "binding", deviceID, secret)
	factory, err2 := h.mac(ctx, "factory", deviceID, secret)
	if err := errors.Join(err1, err2); err != nil {
		return devices.Identity{}, err
	}
	switch {
	case d.SecretHash != nil && d.AccountID != "" && hmac.Equal(binding, d.SecretHash):
		h.dev.authByID.reset(deviceID)
		return devices.Identity{DeviceID: d.ID, AccountID: d.AccountID, Type: d.Type}, nil
	case d.FactoryHash != nil && hmac.Equal(factory, d.FactoryHash):
		h.dev.authByID.reset(deviceID)
		return devices.Identity{DeviceID: d.ID, Type: d.Type}, nil
	}
	return fail()
}

// waitLeft is how much of the back-off after failures is still to run: from 1 s after the
// threshold, doubling with each further failure, at most 5 minutes.
func waitLeft(f failures, threshold int, now time.Time) time.Duration {
	return f.last.Add(backoff(f, threshold, time.Second, 5*time.Minute)).Sub(now)
}

// DeviceIdentity returns who a device is now, for a session that did not authenticate in
// this process (one restored after a restart). An unbound device gets its unbound identity.
func (h *Hub) DeviceIdentity(ctx context.Context, deviceID string) (devices.Identity, error) {
	d, err := h.store.DeviceByID(ctx, deviceID)
	if err != nil {
		return devices.Identity{}, err
	}
	return devices.Identity{DeviceID: d.ID, AccountID: d.AccountID, Type: d.Type}, nil
}

// DeviceOnline records that a device connected or went away.
func (h *Hub) DeviceOnline(ctx context.Context, deviceID string, online bool) {
	if err := h.store.SetDeviceOnline(ctx, deviceID, online, h.clock.Now()); err != nil && ErrorCode(err) != ENotFound {
		h.log.Warn("record device presence", "device", deviceID, "error", err)
	}
}

// BindCodeResult is what a gadget shows its owner.
type BindCodeResult struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RequestBindCode makes a fresh 6-digit code for the gadget (replacing any earlier one).
func (h *Hub) RequestBindCode(ctx context.Context, id devices.Identity) (BindCodeResult, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return BindCodeResult{}, fmt.Errorf("bind code: %w", err)
	}
	code := fmt.Sprintf("%06d", n.Int64())
	hash, err := h.mac(ctx, "bindcode", id.DeviceID, code)
	if err != nil {
		return BindCodeResult{}, err
	}
	exp := h.clock.Now().Add(bindCodeTTL)
	if err := h.store.SaveBindCode(ctx, BindCode{DeviceID: id.DeviceID, CodeHash: hash, ExpiresAt: exp}); err != nil {
		return BindCodeResult{}, err
	}
	return BindCodeResult{Code: code, ExpiresAt: exp}, nil
}

// BindResult is the outcome of a binding.
type BindResult struct {
	DeviceID  string       `json:"device_id"`
	AccountID string       `json:"account_id"`
	Type      devices.Type `json:"type"`
}

// Bind binds a gadget to the account with the code it shows. actor is who asked (a
// controller's device ID, or "http").
//
// Every refused bind is audited in the caller's account, with the answer the caller got and
// nothing more: an unknown device, a missing, expired or used-up code and a wrong code all
// read invalid_code, so the audit log cannot tell a caller which device IDs exist either. A
// device of another account is device_locked for the caller, and its owner's log records the
// attempt (never who made it).
func (h *Hub) Bind(ctx context.Context, accountID, deviceID, code, actor string) (BindResult, error) {
	invalid := FieldError(EInvalidCode, "code", "wrong or expired code: ask the device for a new one")
	if devices.ValidIdentifier(deviceID) != nil {
		return BindResult{}, FieldError(EInvalid, "device_id", "device_id is not a valid device ID")
	}
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return BindResult{}, FieldError(EInvalid, "code", "code is the 6 digits the device shows")
	}
	refused := func(why string) (BindResult, error) {
		h.log.Info("bind refused", "device", deviceID, "actor", actor, "reason", why)
		h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: deviceID, Event: AuditBindRefused, Detail: EInvalidCode, Actor: actor})
		return BindResult{}, invalid
	}
	d, err := h.store.DeviceByID(ctx, deviceID)
	if err != nil {
		if ErrorCode(err) == ENotFound {
			// The same answer as a wrong code: an unknown ID reveals nothing.
			return refused("unknown device")
		}
		return BindResult{}, err
	}
	if d.AccountID != "" && d.AccountID != accountID {
		h.audit(ctx, AuditEntry{AccountID: d.AccountID, DeviceID: d.ID, Event: AuditBindRefused, Detail: "another account tried to bind this device", Actor: "-"})
		h.audit(ctx, AuditEntry{AccountID: accountID, Event: AuditBindRefused, Detail: EDeviceLocked, Actor: actor})
		return BindResult{}, Errorf(EDeviceLocked, "this device is locked to its owner's account; the owner must unbind it first")
	}
	idempotent := BindResult{DeviceID: d.ID, AccountID: accountID, Type: d.Type}
	// boundHere reads the device again: a parallel bind with the same code may have bound it
	// to this account meanwhile, which makes this bind an idempotent repeat.
	boundHere := func() bool {
		cur, err := h.store.DeviceByID(ctx, d.ID)
		return err == nil && cur.AccountID == accountID
	}
	now := h.clock.Now()
	// The try is counted before the code is compared, in one statement with the check that
	// tries are left, so parallel wrong tries cannot exceed the limit.
	bc, err := h.store.TakeBindCodeTry(ctx, deviceID, now, bindCodeMaxTries)
	if err != nil {
		if ErrorCode(err) != ENotFound {
			return BindResult{}, err
		}
		if d.AccountID == accountID || boundHere() {
			return idempotent, nil
		}
		return refused(AsError(err).Message)
	}
	want, err := h.mac(ctx, "bindcode", deviceID, code)
	if err != nil {
		return BindResult{}, err
	}
	if !hmac.Equal(want, bc.CodeHash) {
		if d.AccountID == accountID {
			return idempotent, nil
		}
		return refused("wrong code")
	}
	secret := RandomToken(deviceSecretBytes)
	sh, err := h.mac(ctx, "binding", d.ID, secret)
	if err != nil {
		return BindResult{}, err
	}
	if err := h.store.BindDevice(ctx, d.ID, accountID, sh, bc.CodeHash, now); err != nil {
		if ErrorCode(err) == EInvalidCode {
			if boundHere() {
				return idempotent, nil
			}
			return refused("code used meanwhile")
		}
		return BindResult{}, err
	}
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: d.ID, Event: AuditBind, Detail: string(d.Type), Actor: actor})
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: d.ID, Event: AuditCredentialsIssued, Actor: actor})
	h.sendCommand(ctx, d.ID, devices.CmdBound, devices.BoundArgs{AccountID: accountID, Secret: secret})
	return BindResult{DeviceID: d.ID, AccountID: accountID, Type: d.Type}, nil
}

// Unbind signs a device out of the account. Only the owner can, with the account password.
// The device's sessions are dropped, its binding secret is revoked (it gets a new one only
// through a new binding), its pairings end, and it is told it is unbound.
func (h *Hub) Unbind(ctx context.Context, accountID, deviceID, password, actor string) error {
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return err
	}
	if err := h.checkUnbindAllowed(ctx, d); err != nil { // lostmode.go
		return err
	}
	if password == "" {
		return FieldError(EInvalid, "password", "the account password is required to unbind a device")
	}
	if err := h.VerifyPassword(ctx, accountID, password); err != nil {
		h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: d.ID, Event: AuditUnbindRefused, Detail: ErrorCode(err), Actor: actor})
		if e := AsError(err); e != nil && e.Code == EUnauthorized {
			return FieldError(EUnauthorized, "password", "wrong password")
		}
		return err
	}
	if err := h.unbindDevice(ctx, d.ID); err != nil {
		return err
	}
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: d.ID, Event: AuditUnbind, Actor: actor})
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: d.ID, Event: AuditCredentialsRevoked, Actor: actor})
	h.sendCommand(ctx, d.ID, devices.CmdUnbound, struct{}{})
	if _, s := h.transport(); s != nil {
		s.Drop(d.ID)
	}
	return nil
}

// ownedDevice returns the device if it belongs to the account; a device of another account
// is not_found, exactly like one that does not exist.
func (h *Hub) ownedDevice(ctx context.Context, accountID, deviceID string) (Device, error) {
	notFound := FieldError(ENotFound, "device_id", "no such device in your account")
	if devices.ValidIdentifier(deviceID) != nil {
		return Device{}, notFound
	}
	d, err := h.store.DeviceByID(ctx, deviceID)
	if err != nil {
		if ErrorCode(err) == ENotFound {
			return Device{}, notFound
		}
		return Device{}, err
	}
	if d.AccountID == "" || d.AccountID != accountID {
		return Device{}, notFound
	}
	return d, nil
}

// Devices lists the account's devices.
func (h *Hub) Devices(ctx context.Context, accountID string) ([]DeviceView, error) {
	ds, err := h.store.DevicesByAccount(ctx, accountID)
	if err != nil {
		return nil, err
	}
	out := make([]DeviceView, len(ds))
	for i, d := range ds {
		out[i] = d.view()
	}
	return out, nil
}

// Device returns one of the account's devices.
func (h *Hub) Device(ctx context.Context, accountID, deviceID string) (DeviceView, error) {
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return DeviceView{}, err
	}
	return d.view(), nil
}

// RenameDevice changes the name the owner sees.
func (h *Hub) RenameDevice(ctx context.Context, accountID, deviceID, name string) (DeviceView, error) {
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return DeviceView{}, err
	}
	if name, err = cleanName(name, ""); err != nil {
		return DeviceView{}, err
	}
	if err := h.store.RenameDevice(ctx, d.ID, name); err != nil {
		return DeviceView{}, err
	}
	d.Name = name
	return d.view(), nil
}

// Audit returns the account's most recent audit entries, newest first.
func (h *Hub) Audit(ctx context.Context, accountID string, limit int) ([]AuditEntry, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return h.store.AuditByAccount(ctx, accountID, limit)
}

// RecordRefusal notes an authorization refusal in the device's account's audit log.
func (h *Hub) RecordRefusal(ctx context.Context, id devices.Identity, action, topic, reason string) {
	h.audit(ctx, AuditEntry{AccountID: id.AccountID, DeviceID: id.DeviceID, Event: AuditAccessRefused,
		Detail: fmt.Sprintf("%s %q: %s", action, truncate(topic, 200), reason), Actor: id.DeviceID})
}

// sendCommand publishes an event or command to a device's commands topic at QoS 1.
func (h *Hub) sendCommand(ctx context.Context, deviceID, typ string, args any) {
	_ = h.publishCommand(ctx, deviceID, NewID("cmd"), typ, args, h.clock.Now())
}

// publishCommand publishes one command (args encoded as its JSON) on the device's commands
// topic at QoS 1. Failures are logged here and returned for callers that record delivery.
func (h *Hub) publishCommand(ctx context.Context, deviceID, id, typ string, args any, issued time.Time) error {
	p, _ := h.transport()
	if p == nil {
		return errors.New("no transport")
	}
	raw, ok := args.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(args); err != nil {
			h.log.Error("encode command", "type", typ, "error", err)
			return err
		}
	}
	b, err := json.Marshal(devices.Command{ID: id, Type: typ, Args: raw, IssuedAt: issued.UTC()})
	if err != nil {
		h.log.Error("encode command", "type", typ, "error", err)
		return err
	}
	if err := p.Publish(ctx, devices.CommandTopic(deviceID), b, 1); err != nil {
		h.log.Warn("send command", "device", deviceID, "type", typ, "command", id, "error", err)
		return err
	}
	return nil
}

func cleanName(name, def string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		if def == "" {
			return "", FieldError(EInvalid, "name", "name must not be empty")
		}
		return def, nil
	}
	if len(name) > deviceNameMax {
		return "", FieldError(EInvalid, "name", "name is at most %d bytes", deviceNameMax)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", FieldError(EInvalid, "name", "name must not contain control characters")
		}
	}
	return name, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
