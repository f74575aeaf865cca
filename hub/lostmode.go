package hub

import (
	"context"
	"encoding/json"
	"time"

	"github.com/devicehub/devicehub/devices"
)

// LostMode is a device's lost mode, kept by the hub: the owner's message and the one number
// the phone may call. It is entered by the lock command and left only by the unlock command
// or by the account password typed on the phone and checked here; the phone never holds the
// password or anything that could check it.
type LostMode struct {
	DeviceID      string    `json:"device_id"`
	AccountID     string    `json:"-"`
	Message       string    `json:"message"`
	ContactNumber string    `json:"contact_number"`
	Since         time.Time `json:"since"`
}

// Location is the newest location a device reported.
type Location struct {
	Lat       float64   `json:"lat"`
	Lon       float64   `json:"lon"`
	AccuracyM float64   `json:"accuracy_m"`
	At        time.Time `json:"at"`          // when the fix was taken (the phone's clock)
	Received  time.Time `json:"received_at"` // when the hub stored it
}

// LocationView is the best answer to "where is it": the newest fix and how old it is.
type LocationView struct {
	Location
	AgeSeconds int64 `json:"age_seconds"`
}

func (h *Hub) inLostMode(ctx context.Context, deviceID string) (bool, error) {
	if h.cmd == nil {
		return false, nil
	}
	_, err := h.cmd.store.LostMode(ctx, deviceID)
	switch {
	case err == nil:
		return true, nil
	case ErrorCode(err) == ENotFound:
		return false, nil
	}
	return false, err
}

// checkUnbindAllowed refuses to unbind a device in lost mode, whoever asks and with whatever
// password: the thief of a phone must not sign it out, and the owner, who holds the password,
// unlocks it first (one more step for them, no loophole for anyone else).
func (h *Hub) checkUnbindAllowed(ctx context.Context, d Device) error {
	locked, err := h.inLostMode(ctx, d.ID)
	if err != nil {
		return err
	}
	if locked {
		h.audit(ctx, AuditEntry{AccountID: d.AccountID, DeviceID: d.ID, Event: AuditUnbindRefused, Detail: "lost_mode"})
		return Errorf(EForbidden, "lost_mode: this device is in lost mode; unlock it first (unlock command, or the account password on the device)")
	}
	return nil
}

// LostModeOf returns the lost mode of one of the account's devices, or nil when it is not in
// lost mode.
func (h *Hub) LostModeOf(ctx context.Context, accountID, deviceID string) (*LostMode, error) {
	cs, err := h.commands()
	if err != nil {
		return nil, err
	}
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return nil, err
	}
	lm, err := cs.store.LostMode(ctx, d.ID)
	if err != nil {
		if ErrorCode(err) == ENotFound {
			return nil, nil
		}
		return nil, err
	}
	return &lm, nil
}

// UnlockWithPassword runs the "unlock" op: the owner typed the account password on the
// locked phone. The hub checks it (throttled per account, like every password check), and
// on success leaves lost mode and sends the phone an unlock command. A phone that is not in
// lost mode gets a plain success after the same check.
func (h *Hub) UnlockWithPassword(ctx context.Context, id devices.Identity, password string) error {
	if err := requireBoundController(id); err != nil {
		return err
	}
	cs, err := h.commands()
	if err != nil {
		return err
	}
	if err := h.VerifyPassword(ctx, id.AccountID, password); err != nil {
		h.audit(ctx, AuditEntry{AccountID: id.AccountID, DeviceID: id.DeviceID, Event: AuditUnlockRefused, Detail: ErrorCode(err), Actor: id.DeviceID})
		if e := AsError(err); e != nil && e.Field == "password" {
			e2 := *e
			e2.Field = "args.password"
			return &e2
		}
		return err
	}
	locked, err := h.inLostMode(ctx, id.DeviceID)
	if err != nil || !locked {
		return err
	}
	d, err := h.ownedDevice(ctx, id.AccountID, id.DeviceID)
	if err != nil {
		return err
	}
	now := h.clock.Now()
	c := Command{ID: NewID("cmd"), DeviceID: d.ID, AccountID: id.AccountID, Type: devices.CmdUnlock, State: CommandQueued,
		IssuedBy: id.DeviceID, CreatedAt: now, ExpiresAt: now.Add(cs.opts.SecurityTTL)}
	if err := cs.store.CreateCommand(ctx, c, LostModeChange{Leave: true}); err != nil {
		return err
	}
	h.audit(ctx, AuditEntry{AccountID: id.AccountID, DeviceID: d.ID, Event: AuditUnlocked, Detail: c.ID, Actor: id.DeviceID})
	h.deliver(ctx, c) // the phone is asking, so it is connected
	return nil
}

// Location returns the newest location of one of the account's devices and its age.
func (h *Hub) Location(ctx context.Context, accountID, deviceID string) (LocationView, error) {
	cs, err := h.commands()
	if err != nil {
		return LocationView{}, err
	}
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return LocationView{}, err
	}
	loc, err := cs.store.LatestLocation(ctx, accountID, d.ID)
	if err != nil {
		if ErrorCode(err) == ENotFound {
			return LocationView{}, Errorf(ENotFound, "this device has not reported a location yet; send it a locate command")
		}
		return LocationView{}, err
	}
	age := h.clock.Now().Sub(loc.At)
	if age < 0 {
		age = 0 // a phone clock slightly ahead of ours
	}
	return LocationView{Location: loc, AgeSeconds: int64(age / time.Second)}, nil
}

// DecodeLocation reads a location sample's body ({lat, lon, accuracy_m}) as the sync log
// keeps it.
func DecodeLocation(data []byte, at, received time.Time) (Location, error) {
	var s devices.LocationSample
	if err := json.Unmarshal(data, &s); err != nil {
		return Location{}, err
	}
	return Location{Lat: s.Lat, Lon: s.Lon, AccuracyM: s.AccuracyM, At: at, Received: received}, nil
}
