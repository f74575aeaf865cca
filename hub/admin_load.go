package hub

import (
	"context"
	"fmt"

	"github.com/devicehub/devicehub/devices"
)

// maxLoadBatch bounds one admin fast-path request, like maxProvision.
const maxLoadBatch = 10000

// LoadAccount is a confirmed account made by the admin fast path, with a live session.
type LoadAccount struct {
	AccountID  string `json:"account_id"`
	Identifier string `json:"identifier"`
	Password   string `json:"password"`
	Token      string `json:"token"`
}

// CreateLoadAccounts creates n confirmed accounts, each with a session, without challenges,
// codes, messages or rate limits: the load-testing fast path behind the admin token
// (docs/api.md). Every account of one batch shares one random password, returned with each,
// because a person's password is an argon2id hash of 19 MiB: ten thousand of them would take
// minutes and gigabytes, and load tests never type passwords.
func (h *Hub) CreateLoadAccounts(ctx context.Context, n int, ip string) ([]LoadAccount, error) {
	if n < 1 || n > maxLoadBatch {
		return nil, FieldError(EInvalid, "count", "count must be between 1 and %d", maxLoadBatch)
	}
	password := RandomToken(18)
	hash, err := h.acc.pw.hash(ctx, password)
	if err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	batch := RandomToken(6)
	now := h.clock.Now()
	out := make([]LoadAccount, 0, n)
	for i := range n {
		ident := fmt.Sprintf("load-%s-%d@loadtest.invalid", batch, i)
		acc := Account{ID: NewID("acc"), Identifier: ident, Kind: KindEmail, Status: StatusActive,
			PasswordHash: hash, CreatedAt: now, ConfirmedAt: now}
		// The store keeps an account together with its first verification; this one is
		// born used, so no code ever confirms or resets anything through it.
		v := Verification{ID: NewID("ver"), AccountID: acc.ID, Purpose: PurposeConfirm,
			CodeHash: mac([]byte(RandomToken(32)), "unused"), CreatedAt: now, ExpiresAt: now, UsedAt: now}
		if err := h.store.CreateAccount(ctx, acc, v); err != nil {
			return nil, fmt.Errorf("load account %d: %w", i, err)
		}
		token, _, err := h.newSession(ctx, acc.ID, AccountRequest{IP: ip, UserAgent: "devicehub-admin-load"})
		if err != nil {
			return nil, err
		}
		out = append(out, LoadAccount{AccountID: acc.ID, Identifier: ident, Password: password, Token: token})
	}
	return out, nil
}

// LoadBinding is one device to bind through the admin fast path and, in the answer, its new
// binding secret.
type LoadBinding struct {
	DeviceID  string `json:"device_id"`
	AccountID string `json:"account_id"`
	Secret    string `json:"secret,omitempty"`
}

// AdminBindDevices binds existing devices to accounts without bind codes and returns their
// binding secrets (no "bound" command is sent: the caller holds the secret). It is the
// load-testing fast path behind the admin token; activation lock still holds, so a device of
// another account is refused with device_locked. Every binding is checked before any is made.
func (h *Hub) AdminBindDevices(ctx context.Context, bs []LoadBinding) ([]LoadBinding, error) {
	if len(bs) < 1 || len(bs) > maxLoadBatch {
		return nil, FieldError(EInvalid, "bindings", "bindings must hold 1 to %d entries", maxLoadBatch)
	}
	accounts := map[string]bool{}
	ds := make([]Device, len(bs))
	for i, b := range bs {
		if !accounts[b.AccountID] {
			if _, err := h.store.AccountByID(ctx, b.AccountID); err != nil {
				if ErrorCode(err) == ENotFound {
					return nil, FieldError(ENotFound, "account_id", "binding %d: no account %q", i, b.AccountID)
				}
				return nil, err
			}
			accounts[b.AccountID] = true
		}
		if devices.ValidIdentifier(b.DeviceID) != nil {
			return nil, FieldError(EInvalid, "device_id", "binding %d: not a valid device ID", i)
		}
		d, err := h.store.DeviceByID(ctx, b.DeviceID)
		if err != nil {
			if ErrorCode(err) == ENotFound {
				return nil, FieldError(ENotFound, "device_id", "binding %d: no device %q", i, b.DeviceID)
			}
			return nil, err
		}
		if d.AccountID != "" && d.AccountID != b.AccountID {
			return nil, FieldError(EDeviceLocked, "device_id", "binding %d: device %s is bound to another account", i, d.ID)
		}
		ds[i] = d
	}
	now := h.clock.Now()
	out := make([]LoadBinding, len(bs))
	for i, b := range bs {
		secret := RandomToken(deviceSecretBytes)
		if err := h.rebind(ctx, ds[i], b.AccountID, secret, now); err != nil {
			return nil, fmt.Errorf("admin bind %s: %w", b.DeviceID, err)
		}
		out[i] = LoadBinding{DeviceID: b.DeviceID, AccountID: b.AccountID, Secret: secret}
	}
	return out, nil
}
