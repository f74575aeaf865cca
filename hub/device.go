package hub

import (
	"context"
	"time"

	"github.com/devicehub/devicehub/devices"
)

// Device is one gadget or controller. A device has up to three secrets, kept only as keyed
// hashes:
//   - the factory secret, set at provisioning and burnt into the gadget: it only ever grants
//     what an unbound device needs (asking for a bind code), so a gadget can always be bound
//     again, even after its owner unbound it or it was reset;
//   - the binding secret, issued by each binding and revoked by unbinding: it grants the
//     device's full rights in its account;
//   - for phones and tablets, the hardware ID, so a wiped phone registered again is recognised
//     and activation lock still holds.
type Device struct {
	ID           string
	Type         devices.Type
	Name         string
	AccountID    string // "" while unbound
	FactoryHash  []byte // nil for controllers registered by sign-in
	SecretHash   []byte // nil while unbound
	HardwareHash []byte // controllers only
	CreatedAt    time.Time
	BoundAt      time.Time // zero while unbound
	LastSeenAt   time.Time // zero until it first connects
	Online       bool
}

// BindCode is the 6-digit code a gadget shows so that its owner can bind it.
type BindCode struct {
	DeviceID  string
	CodeHash  []byte
	ExpiresAt time.Time
	Attempts  int // tries so far, the one being made included
}

// AuditEntry is one security-relevant event, readable by the account's owner.
type AuditEntry struct {
	ID        int64     `json:"id"`
	AccountID string    `json:"-"`
	DeviceID  string    `json:"device_id,omitempty"`
	Event     string    `json:"event"`
	Detail    string    `json:"detail,omitempty"`
	Actor     string    `json:"actor,omitempty"` // the device ID or "http" that acted
	At        time.Time `json:"at"`
}

// Audit events.
const (
	AuditBind               = "bind"
	AuditBindRefused        = "bind_refused"
	AuditUnbind             = "unbind"
	AuditUnbindRefused      = "unbind_refused"
	AuditCredentialsIssued  = "credentials_issued"
	AuditCredentialsRevoked = "credentials_revoked"
	AuditAccessRefused      = "access_refused"
	AuditDeviceRegistered   = "device_registered"
)

// DeviceStore keeps devices, bindings, bind codes and the audit log.
type DeviceStore interface {
	// CreateDevices inserts new devices in one transaction.
	CreateDevices(ctx context.Context, ds []Device) error
	DeviceByID(ctx context.Context, id string) (Device, error)
	// DeviceByHardware finds a controller by the keyed hash of its hardware ID.
	DeviceByHardware(ctx context.Context, hash []byte) (Device, error)
	DevicesByAccount(ctx context.Context, accountID string) ([]Device, error)
	// SaveBindCode replaces the device's bind code.
	SaveBindCode(ctx context.Context, c BindCode) error
	// TakeBindCodeTry counts one try on the device's bind code and returns the code, as one
	// atomic step, if the code is valid at now and had fewer than maxTries tries; otherwise
	// it counts nothing and fails with not_found (the message says why).
	TakeBindCodeTry(ctx context.Context, deviceID string, now time.Time, maxTries int) (BindCode, error)
	// BindDevice sets the device's account and binding secret and removes its bind code, in
	// one transaction. It fails with device_locked when the device is bound to another
	// account by then (the check in the hub raced with another binding). With codeHash set
	// it consumes that bind code, and fails with invalid_code when the code is gone (a
	// parallel bind with the same code used it): a code binds once.
	BindDevice(ctx context.Context, deviceID, accountID string, secretHash, codeHash []byte, at time.Time) error
	// UnbindDevice clears the account and binding secret, and removes the device's bind code
	// and pairings, in one transaction.
	UnbindDevice(ctx context.Context, deviceID string) error
	RenameDevice(ctx context.Context, deviceID, name string) error
	// SetDeviceOnline records a connection or disconnection.
	SetDeviceOnline(ctx context.Context, deviceID string, online bool, at time.Time) error
	AppendAudit(ctx context.Context, e AuditEntry) error
	AuditByAccount(ctx context.Context, accountID string, limit int) ([]AuditEntry, error)
}

// Sessions is the transport's side of devices: what the hub asks the broker to do when a
// device's rights change.
type Sessions interface {
	// Drop disconnects the device and forgets its broker session (subscriptions and queued
	// messages), so nothing more reaches whoever holds its old credentials.
	Drop(deviceID string)
}

// Credentials are a device's MQTT login, shown once.
type Credentials struct {
	DeviceID string       `json:"device_id"`
	Type     devices.Type `json:"type"`
	// Secret is the MQTT password. For provisioned gadgets it is the factory secret; for a
	// registered phone it is its binding secret.
	Secret    string `json:"secret"`
	AccountID string `json:"account_id,omitempty"`
}

// DeviceView is what an owner sees of a device.
type DeviceView struct {
	ID         string       `json:"id"`
	Type       devices.Type `json:"type"`
	Name       string       `json:"name"`
	AccountID  string       `json:"account_id,omitempty"`
	BoundAt    *time.Time   `json:"bound_at,omitempty"`
	LastSeenAt *time.Time   `json:"last_seen_at,omitempty"`
	Online     bool         `json:"online"`
	CreatedAt  time.Time    `json:"created_at"`
}

func (d Device) view() DeviceView {
	v := DeviceView{ID: d.ID, Type: d.Type, Name: d.Name, AccountID: d.AccountID, Online: d.Online, CreatedAt: d.CreatedAt}
	if !d.BoundAt.IsZero() {
		t := d.BoundAt
		v.BoundAt = &t
	}
	if !d.LastSeenAt.IsZero() {
		t := d.LastSeenAt
		v.LastSeenAt = &t
	}
	return v
}
