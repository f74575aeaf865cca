package hub

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/devicehub/devicehub/devices"
)

// Command states. A command is stored queued, becomes delivered when it was handed to the
// broker for a connected device, and ends acknowledged or failed (the device's command_ack)
// or expired (nobody carried it out in time). Open commands (queued, delivered) are sent
// again each time the device connects.
const (
	CommandQueued       = "queued"
	CommandDelivered    = "delivered"
	CommandAcknowledged = "acknowledged"
	CommandFailed       = "failed"
	CommandExpired      = "expired"
)

// Audit events of commands and lost mode.
const (
	AuditCommand       = "command"
	AuditUnlockRefused = "unlock_refused"
	AuditUnlocked      = "unlocked_with_password"
)

// maxLockMessage bounds the text a locked screen shows (docs/protocol.md).
const maxLockMessage = 256

// Command is one owner command to a device, as stored.
type Command struct {
	ID        string
	DeviceID  string
	AccountID string // the account that issued it
	Type      string
	Args      json.RawMessage // nil when the type has none
	State     string
	IssuedBy  string // "http" or the controller's device ID
	CreatedAt time.Time
	// DeliveredAt is when the broker accepted it for the connected device (zero: not yet).
	DeliveredAt time.Time
	AckedAt     time.Time // when the device acknowledged or failed it
	ExpiresAt   time.Time
	Detail      string // the device's note with its acknowledgement, or why it ended
}

// Open reports whether the command still waits for the device.
func (c Command) Open() bool { return c.State == CommandQueued || c.State == CommandDelivered }

// CommandView is what the owner sees of a command.
type CommandView struct {
	ID          string          `json:"id"`
	DeviceID    string          `json:"device_id"`
	Type        string          `json:"type"`
	Args        json.RawMessage `json:"args,omitempty"`
	State       string          `json:"state"`
	IssuedBy    string          `json:"issued_by"`
	CreatedAt   time.Time       `json:"created_at"`
	DeliveredAt *time.Time      `json:"delivered_at,omitempty"`
	AckedAt     *time.Time      `json:"acked_at,omitempty"`
	ExpiresAt   time.Time       `json:"expires_at"`
	Detail      string          `json:"detail,omitempty"`
}

func (c Command) view(now time.Time) CommandView {
	v := CommandView{ID: c.ID, DeviceID: c.DeviceID, Type: c.Type, Args: c.Args, State: c.State, IssuedBy: c.IssuedBy,
		CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, Detail: c.Detail}
	// Expiry is lazy: a read between the deadline and the next expiry pass already says so.
	if c.Open() && !now.Before(c.ExpiresAt) {
		v.State = CommandExpired
	}
	if !c.DeliveredAt.IsZero() {
		t := c.DeliveredAt
		v.DeliveredAt = &t
	}
	if !c.AckedAt.IsZero() {
		t := c.AckedAt
		v.AckedAt = &t
	}
	return v
}

// LostModeChange is what issuing a command does to the device's lost mode, in the same
// transaction as storing the command.
type LostModeChange struct {
	Enter *LostMode // lock: enter (or update) lost mode
	Leave bool      // unlock: leave it
}

// CommandStore keeps owner commands and lost mode (commands.go, lostmode.go).
type CommandStore interface {
	// CreateCommand stores a new command and applies lm, in one transaction.
	CreateCommand(ctx context.Context, c Command, lm LostModeChange) error
	// CommandByID returns one command of the device (not_found otherwise).
	CommandByID(ctx context.Context, deviceID, id string) (Command, error)
	// CommandsByDevice lists the commands accountID issued to the device, newest first.
	CommandsByDevice(ctx context.Context, deviceID, accountID string, limit int) ([]Command, error)
	// OpenCommands lists the device's queued and delivered commands, oldest first.
	OpenCommands(ctx context.Context, deviceID string) ([]Command, error)
	// MarkCommandDelivered moves a queued command to delivered.
	MarkCommandDelivered(ctx context.Context, id string, at time.Time) error
	// FinishCommand records the device's acknowledgement (state acknowledged or failed) of an
	// open or expired command of that device; it reports whether the command changed.
	FinishCommand(ctx context.Context, deviceID, id, state, detail string, at time.Time) (bool, error)
	// ExpireCommands marks open commands past their deadline expired (of one device, or of
	// every device when deviceID is ""), and returns how many.
	ExpireCommands(ctx context.Context, deviceID string, now time.Time) (int, error)
	// LostMode returns the device's lost mode (not_found when it is not in lost mode).
	LostMode(ctx context.Context, deviceID string) (LostMode, error)
	// LatestLocation is the newest location sample the device reported while bound to the
	// account (not_found when none is kept).
	LatestLocation(ctx context.Context, accountID, deviceID string) (Location, error)
}

// CommandOptions tune commands and lost mode.
type CommandOptions struct {
	// TTL is how long locate and ring wait for their device (default 24h).
	TTL time.Duration
	// SecurityTTL is how long lock, unlock and wipe wait (default 30 days): a stolen phone
	// may stay off for weeks, and the lock must still reach it.
	SecurityTTL time.Duration
	// LocationInterval is how often a phone in lost mode reports its location (default 5m);
	// it travels in the lock command.
	LocationInterval time.Duration
	// ExpiryEvery is how often RunCommandExpiry marks expired commands (default 1m).
	ExpiryEvery time.Duration
}

type commandState struct {
	store CommandStore
	opts  CommandOptions
}

func newCommandState(s CommandStore, o CommandOptions) *commandState {
	if s == nil {
		return nil
	}
	if o.TTL <= 0 {
		o.TTL = 24 * time.Hour
	}
	if o.SecurityTTL <= 0 {
		o.SecurityTTL = 30 * 24 * time.Hour
	}
	if o.LocationInterval <= 0 {
		o.LocationInterval = 5 * time.Minute
	}
	if o.ExpiryEvery <= 0 {
		o.ExpiryEvery = time.Minute
	}
	return &commandState{store: s, opts: o}
}

func (h *Hub) commands() (*commandState, error) {
	if h.cmd == nil {
		return nil, Errorf(EInternal, "commands are not configured")
	}
	return h.cmd, nil
}

// CommandRequest is an owner's command as the HTTP API and the "command" op take it.
type CommandRequest struct {
	Type          string `json:"type"`
	Message       string `json:"message,omitempty"`
	ContactNumber string `json:"contact_number,omitempty"`
}

// ownerCommand reports whether t is a command owners may issue.
func ownerCommand(t string) bool {
	switch t {
	case devices.CmdLocate, devices.CmdRing, devices.CmdLock, devices.CmdUnlock, devices.CmdWipe:
		return true
	}
	return false
}

// IssueCommand stores an owner's command to one of the account's devices and sends it at
// once if the device is connected (otherwise when it connects). actor is "http" or the
// issuing controller's device ID. lock puts the device in lost mode and unlock takes it out,
// as soon as they are issued: the hub refuses to unbind a device in lost mode from then on,
// whether or not the phone has heard of it yet.
func (h *Hub) IssueCommand(ctx context.Context, accountID, deviceID string, req CommandRequest, actor string) (CommandView, error) {
	cs, err := h.commands()
	if err != nil {
		return CommandView{}, err
	}
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return CommandView{}, err
	}
	if !ownerCommand(req.Type) {
		return CommandView{}, FieldError(EInvalid, "type", "type must be one of locate, ring, lock, unlock, wipe")
	}
	if !devices.IsController(d.Type) {
		return CommandView{}, FieldError(EInvalid, "type", "only phones and tablets take %s commands", req.Type)
	}
	if req.Type != devices.CmdLock && (req.Message != "" || req.ContactNumber != "") {
		return CommandView{}, FieldError(EInvalid, "message", "message and contact_number go only with lock")
	}
	now := h.clock.Now()
	c := Command{ID: NewID("cmd"), DeviceID: d.ID, AccountID: accountID, Type: req.Type, State: CommandQueued,
		IssuedBy: actor, CreatedAt: now, ExpiresAt: now.Add(cs.opts.TTL)}
	var lm LostModeChange
	switch req.Type {
	case devices.CmdLock:
		msg, err := cleanLockMessage(req.Message)
		if err != nil {
			return CommandView{}, err
		}
		phone, err := ParsePhone("contact_number", req.ContactNumber)
		if err != nil {
			return CommandView{}, err
		}
		c.Args, _ = json.Marshal(devices.LockArgs{Message: msg, ContactNumber: phone.Value,
			ReportIntervalS: int(cs.opts.LocationInterval / time.Second)})
		lm.Enter = &LostMode{DeviceID: d.ID, AccountID: accountID, Message: msg, ContactNumber: phone.Value, Since: now}
		c.ExpiresAt = now.Add(cs.opts.SecurityTTL)
	case devices.CmdUnlock:
		lm.Leave = true
		c.ExpiresAt = now.Add(cs.opts.SecurityTTL)
	case devices.CmdWipe:
		c.ExpiresAt = now.Add(cs.opts.SecurityTTL)
	}
	if err := cs.store.CreateCommand(ctx, c, lm); err != nil {
		return CommandView{}, err
	}
	h.audit(ctx, AuditEntry{AccountID: accountID, DeviceID: d.ID, Event: AuditCommand, Detail: c.Type + " " + c.ID, Actor: actor})
	// Presence is read again after the commit: a device that connects meanwhile marks itself
	// online before it subscribes and asks for its open commands, so either it finds this
	// one or this read finds it online; nothing falls between.
	if h.deviceOnline(ctx, d.ID) {
		c = h.deliver(ctx, c)
	}
	return c.view(h.clock.Now()), nil
}

// deviceOnline reports whether the device is connected now, as far as the store knows.
func (h *Hub) deviceOnline(ctx context.Context, deviceID string) bool {
	d, err := h.store.DeviceByID(ctx, deviceID)
	return err == nil && d.Online
}

func cleanLockMessage(s string) (string, error) {
	if len(s) > maxLockMessage {
		return "", FieldError(EInvalid, "message", "message is at most %d bytes", maxLockMessage)
	}
	if !utf8.ValidString(s) {
		return "", FieldError(EInvalid, "message", "message must be UTF-8 text")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' {
			return "", FieldError(EInvalid, "message", "message must not contain control characters")
		}
	}
	return s, nil
}

// deliver publishes the command on the device's commands topic at QoS 1 and marks it
// delivered: it is only called for a connected device, and the broker accepting it for a
// live session is the best signal the hub gets short of the acknowledgement. Commands for an
// offline device are not published at all but sent when it connects (DeviceConnected): the
// store is the queue, and a persistent session does not get a second copy (mochi would also
// refuse the device's SUBSCRIBE whose packet ID collides with a queued message's).
func (h *Hub) deliver(ctx context.Context, c Command) Command {
	if err := h.publishCommand(ctx, c.DeviceID, c.ID, c.Type, c.Args, c.CreatedAt); err != nil {
		return c
	}
	if c.State == CommandQueued {
		now := h.clock.Now()
		if err := h.cmd.store.MarkCommandDelivered(ctx, c.ID, now); err != nil {
			h.log.Warn("mark command delivered", "command", c.ID, "error", err)
			return c
		}
		c.State, c.DeliveredAt = CommandDelivered, now
	}
	return c
}

// DeviceConnected sends the device every command it has not acknowledged yet, oldest first.
// The transport calls it when the device subscribes to its commands topic, which a device
// does after every connect.
//
// It only reads unless there is something to send, so a reconnect storm costs no writes;
// commands past their deadline are skipped here and marked expired by RunCommandExpiry (and
// shown expired by every read before that).
func (h *Hub) DeviceConnected(ctx context.Context, deviceID string) {
	if h.cmd == nil {
		return
	}
	cs, err := h.cmd.store.OpenCommands(ctx, deviceID)
	if err != nil {
		h.log.Warn("open commands", "device", deviceID, "error", err)
		return
	}
	now := h.clock.Now()
	for _, c := range cs {
		if now.Before(c.ExpiresAt) {
			h.deliver(ctx, c)
		}
	}
}

// AckCommand records a device's command_ack. Acknowledgements of commands the hub did not
// store (events such as "settings", or IDs of other devices' commands) are accepted and
// change nothing, so a device never learns whether another device's command ID exists.
func (h *Hub) AckCommand(ctx context.Context, id devices.Identity, a devices.CommandAckArgs) error {
	if !id.Bound() {
		return nil
	}
	if err := h.ackPairingNotice(ctx, id.DeviceID, a.CommandID); err != nil {
		return err
	}
	if h.cmd == nil {
		return nil
	}
	state := CommandAcknowledged
	if a.Status == devices.AckFailed {
		state = CommandFailed
	}
	if _, err := h.cmd.store.FinishCommand(ctx, id.DeviceID, a.CommandID, state, a.Detail, h.clock.Now()); err != nil {
		return err
	}
	return nil
}

// Commands lists the commands the account issued to one of its devices, newest first.
func (h *Hub) Commands(ctx context.Context, accountID, deviceID string, limit int) ([]CommandView, error) {
	cs, err := h.commands()
	if err != nil {
		return nil, err
	}
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	list, err := cs.store.CommandsByDevice(ctx, d.ID, accountID, limit)
	if err != nil {
		return nil, err
	}
	now := h.clock.Now()
	out := make([]CommandView, len(list))
	for i, c := range list {
		out[i] = c.view(now)
	}
	return out, nil
}

// CommandStatus returns one command the account issued to one of its devices.
func (h *Hub) CommandStatus(ctx context.Context, accountID, deviceID, commandID string) (CommandView, error) {
	cs, err := h.commands()
	if err != nil {
		return CommandView{}, err
	}
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return CommandView{}, err
	}
	notFound := FieldError(ENotFound, "command_id", "no such command for this device")
	if devices.ValidIdentifier(commandID) != nil {
		return CommandView{}, notFound
	}
	c, err := cs.store.CommandByID(ctx, d.ID, commandID)
	if err != nil {
		if ErrorCode(err) == ENotFound {
			return CommandView{}, notFound
		}
		return CommandView{}, err
	}
	if c.AccountID != accountID {
		return CommandView{}, notFound // a previous owner's command
	}
	return c.view(h.clock.Now()), nil
}

// ExpireCommands marks every open command past its deadline expired.
func (h *Hub) ExpireCommands(ctx context.Context) (int, error) {
	cs, err := h.commands()
	if err != nil {
		return 0, err
	}
	return cs.store.ExpireCommands(ctx, "", h.clock.Now())
}

// RunCommandExpiry marks expired commands every CommandOptions.ExpiryEvery until ctx ends.
// Reads already show expired commands as such; this keeps the stored state honest for
// devices that never come back.
func (h *Hub) RunCommandExpiry(ctx context.Context) {
	if h.cmd == nil {
		return
	}
	t := time.NewTicker(h.cmd.opts.ExpiryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := h.ExpireCommands(ctx); err != nil {
				if ctx.Err() == nil {
					h.log.Warn("expire commands", "error", err)
				}
			} else if n > 0 {
				h.log.Info("commands expired", "count", n)
			}
		}
	}
}

// commandFromDevice runs the "command" op: a controller commands another device of its
// account. A controller in lost mode may command nothing (a thief must not unlock or wipe
// anything from it), and no device commands itself.
func (h *Hub) commandFromDevice(ctx context.Context, id devices.Identity, a devices.CommandArgs) (CommandView, error) {
	if err := requireBoundController(id); err != nil {
		return CommandView{}, err
	}
	if a.DeviceID == id.DeviceID {
		return CommandView{}, FieldError(EForbidden, "args.device_id", "a device cannot command itself")
	}
	locked, err := h.inLostMode(ctx, id.DeviceID)
	if err != nil {
		return CommandView{}, err
	}
	if locked {
		return CommandView{}, Errorf(EForbidden, "lost_mode: this device is in lost mode and cannot issue commands")
	}
	v, err := h.IssueCommand(ctx, id.AccountID, a.DeviceID, CommandRequest{Type: a.Type, Message: a.Message, ContactNumber: a.ContactNumber}, id.DeviceID)
	if e := AsError(err); e != nil && e.Field != "" && !strings.HasPrefix(e.Field, "args.") {
		e.Field = "args." + e.Field // the request's field names
	}
	return v, err
}
