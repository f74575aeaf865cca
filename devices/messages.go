package devices

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
)

// Size bounds for JSON a client sends. The broker bounds whole packets; these bound what the
// decoders will look at, so a valid-looking request cannot carry megabytes of args.
const (
	MaxRequestSize   = 16 * 1024
	MaxTelemetrySize = 4 * 1024
	MaxRequestIDLen  = 64
)

// DecodeError is why a payload was refused: the JSON field it is about ("" for the payload as
// a whole) and a message for people. The hub turns it into an "invalid" error on the response
// topic, with Field copied into ErrorBody.Field.
type DecodeError struct {
	Field   string
	Message string
	Err     error // the cause, if any (for errors.Is/As)
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "invalid payload: " + e.Message
	}
	return "invalid field " + e.Field + ": " + e.Message
}

func (e *DecodeError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) *DecodeError {
	return &DecodeError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// decodeStrict unmarshals one JSON value from b into v, refusing unknown fields, trailing
// data and payloads over max bytes. Clients that send fields we do not know are told so at
// once, instead of believing a misspelt option took effect.
func decodeStrict(b []byte, v any, max int) error {
	if len(b) > max {
		return &DecodeError{Message: fmt.Sprintf("%d bytes, at most %d", len(b), max)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonErr(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &DecodeError{Message: "trailing data after the JSON value"}
	}
	return nil
}

// jsonErr names the field encoding/json complained about, where it says.
func jsonErr(err error) *DecodeError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// Telemetry wire structs embed their common fields; clients see them at top level.
		return &DecodeError{Field: strings.TrimPrefix(te.Field, "header."), Message: "expected " + te.Type.String() + ", got JSON " + te.Value, Err: err}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &DecodeError{Message: fmt.Sprintf("malformed JSON at byte %d", se.Offset), Err: err}
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return &DecodeError{Field: "ts", Message: "must be an RFC 3339 timestamp", Err: err}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &DecodeError{Message: "empty or truncated JSON", Err: err}
	}
	// DisallowUnknownFields reports `json: unknown field "x"`; keep the text, it names the field.
	return &DecodeError{Message: err.Error(), Err: err}
}

// Request operations a device may send on its request topic.
const (
	// OpBindCode: a gadget asks for a bind code to show its owner. No args; result BindCodeResult.
	OpBindCode = "bind_code"
	// OpBind: a controller binds a gadget to its account with the gadget's code. Args BindArgs;
	// result BindResult.
	OpBind = "bind"
	// OpUnbind: a device leaves its account, or a controller removes another device. Args
	// UnbindArgs; no result.
	OpUnbind = "unbind"
	// OpPair: pair a controller with a gadget of the same account (sent by either side). Args
	// PairArgs; no result (both sides receive a "paired" command).
	OpPair = "pair"
	// OpUnpair: undo a pairing. Args PairArgs; no result.
	OpUnpair = "unpair"
	// OpCommandAck: the device reports the outcome of a command. Args CommandAckArgs.
	OpCommandAck = "command_ack"
	// OpSyncAck: a controller confirms it has stored sync entries up to a cursor. Args SyncAckArgs.
	OpSyncAck = "sync_ack"
	// OpSettingsGet: read a device's settings. Args SettingsGetArgs; result SettingsResult.
	OpSettingsGet = "settings_get"
	// OpSettingsSet: a controller changes desired settings. Args SettingsSetArgs; result
	// SettingsResult.
	OpSettingsSet = "settings_set"
	// OpSettingsReport: a device reports the settings (or the profile version) it applied.
	// Args SettingsReportArgs.
	OpSettingsReport = "settings_report"
	// OpUnlock: unlock a locked device with the account password. Args UnlockArgs.
	OpUnlock = "unlock"
)

// Ops lists every request operation.
func Ops() []string {
	return []string{OpBindCode, OpBind, OpUnbind, OpPair, OpUnpair, OpCommandAck, OpSyncAck,
		OpSettingsGet, OpSettingsSet, OpSettingsReport, OpUnlock, OpCommand}
}

// KnownOp reports whether op is a request operation.
func KnownOp(op string) bool {
	for _, o := range Ops() {
		if o == op {
			return true
		}
	}
	return false
}

// Request is what a device publishes on RequestTopic.
type Request struct {
	// ID correlates the response: 1 to 64 printable ASCII characters chosen by the device,
	// unique among its requests in flight. The response carries the same ID.
	ID string `json:"id"`
	// Op is one of the Op constants.
	Op string `json:"op"`
	// Args are the operation's arguments (a JSON object, see the *Args types); omitted for
	// operations without arguments.
	Args json.RawMessage `json:"args,omitempty"`
}

// DecodeRequest parses and checks a request payload. Errors are *DecodeError.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if err := decodeStrict(b, &r, MaxRequestSize); err != nil {
		return Request{}, err
	}
	if err := validRequestID(r.ID); err != nil {
		return Request{}, err
	}
	if !KnownOp(r.Op) {
		return Request{}, fieldErr("op", "unknown operation %q", truncate(r.Op))
	}
	if len(r.Args) > 0 && r.Args[0] != '{' && string(r.Args) != "null" {
		return Request{}, fieldErr("args", "must be a JSON object")
	}
	return r, nil
}

func validRequestID(id string) error {
	if id == "" || len(id) > MaxRequestIDLen {
		return fieldErr("id", "must be 1 to %d characters", MaxRequestIDLen)
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return fieldErr("id", "must be printable ASCII without spaces")
		}
	}
	return nil
}

// truncate keeps client text quoted in error messages short.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// Validator is implemented by argument types that check their own values after decoding.
type Validator interface{ Validate() error }

// DecodeArgs decodes r.Args strictly into a T (unknown fields refused; missing args decode as
// an empty object) and runs T's Validate method if it has one. Errors are *DecodeError with
// Field naming the argument, prefixed "args.".
func DecodeArgs[T any](r Request) (T, error) {
	var v T
	b := []byte(r.Args)
	if len(b) == 0 || string(b) == "null" {
		b = []byte("{}")
	}
	if err := decodeStrict(b, &v, MaxRequestSize); err != nil {
		var zero T
		return zero, prefixField(err)
	}
	if val, ok := any(&v).(Validator); ok {
		if err := val.Validate(); err != nil {
			var zero T
			return zero, prefixField(err)
		}
	}
	return v, nil
}

func prefixField(err error) error {
	var de *DecodeError
	if errors.As(err, &de) {
		f := "args"
		if de.Field != "" {
			f += "." + de.Field
		}
		return &DecodeError{Field: f, Message: de.Message, Err: de.Err}
	}
	return &DecodeError{Field: "args", Message: err.Error(), Err: err}
}

func requireID(field, v string) error {
	if err := ValidIdentifier(v); err != nil {
		return &DecodeError{Field: field, Message: "must be a device ID", Err: err}
	}
	return nil
}

func optionalID(field, v string) error {
	if v == "" {
		return nil
	}
	return requireID(field, v)
}

// MaxPasswordLen bounds passwords in args (bcrypt-style hashes only look at 72 bytes anyway).
const MaxPasswordLen = 128

func requirePassword(v string) error {
	if v == "" || len(v) > MaxPasswordLen {
		return fieldErr("password", "must be 1 to %d bytes", MaxPasswordLen)
	}
	return nil
}

// BindCodeResult is the result of bind_code.
type BindCodeResult struct {
	// Code is six decimal digits the gadget shows (or its packaging prints) for its owner to
	// type into the app.
	Code string `json:"code"`
	// ExpiresAt is when the code stops working (RFC 3339).
	ExpiresAt time.Time `json:"expires_at"`
}

// BindArgs are the args of bind, sent by a controller.
type BindArgs struct {
	// DeviceID is the gadget to bind.
	DeviceID string `json:"device_id"`
	// Code is the gadget's current bind code: exactly six decimal digits.
	Code string `json:"code"`
}

// Validate checks the args.
func (a *BindArgs) Validate() error {
	if err := requireID("device_id", a.DeviceID); err != nil {
		return err
	}
	if len(a.Code) != 6 {
		return fieldErr("code", "must be 6 digits")
	}
	for _, c := range a.Code {
		if c < '0' || c > '9' {
			return fieldErr("code", "must be 6 digits")
		}
	}
	return nil
}

// BindResult is the result of bind.
type BindResult struct {
	// DeviceID is the device now bound.
	DeviceID string `json:"device_id"`
	// AccountID is the account it is bound to.
	AccountID string `json:"account_id"`
}

// UnbindArgs are the args of unbind.
type UnbindArgs struct {
	// DeviceID is the device to unbind; empty means the sender itself.
	DeviceID string `json:"device_id,omitempty"`
	// Password is the account password, so a stolen phone cannot release the owner's gadgets.
	Password string `json:"password"`
}

// Validate checks the args.
func (a *UnbindArgs) Validate() error {
	if err := optionalID("device_id", a.DeviceID); err != nil {
		return err
	}
	return requirePassword(a.Password)
}

// PairArgs are the args of pair and unpair.
type PairArgs struct {
	// DeviceID is the other side of the pairing.
	DeviceID string `json:"device_id"`
}

// Validate checks the args.
func (a *PairArgs) Validate() error { return requireID("device_id", a.DeviceID) }

// Command acknowledgement statuses.
const (
	AckAcknowledged = "acknowledged"
	AckFailed       = "failed"
)

// MaxDetailLen bounds free text devices send back.
const MaxDetailLen = 512

// CommandAckArgs are the args of command_ack.
type CommandAckArgs struct {
	// CommandID is Command.ID of the command being acknowledged.
	CommandID string `json:"command_id"`
	// Status is "acknowledged" (carried out) or "failed".
	Status string `json:"status"`
	// Detail is optional free text, at most 512 bytes (why it failed, for the owner).
	Detail string `json:"detail,omitempty"`
}

// Validate checks the args.
func (a *CommandAckArgs) Validate() error {
	if err := ValidIdentifier(a.CommandID); err != nil {
		return &DecodeError{Field: "command_id", Message: "must be a command ID", Err: err}
	}
	if a.Status != AckAcknowledged && a.Status != AckFailed {
		return fieldErr("status", "must be %q or %q", AckAcknowledged, AckFailed)
	}
	if len(a.Detail) > MaxDetailLen || !printable(a.Detail) {
		return fieldErr("detail", "must be at most %d bytes of printable text", MaxDetailLen)
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}

// SyncAckArgs are the args of sync_ack.
type SyncAckArgs struct {
	// Cursor is the highest SyncEntry.Cursor the controller has stored; the hub may drop
	// entries up to it from the controller's backlog.
	Cursor int64 `json:"cursor"`
}

// Validate checks the args.
func (a *SyncAckArgs) Validate() error {
	if a.Cursor < 1 {
		return fieldErr("cursor", "must be at least 1")
	}
	return nil
}

// SettingsGetArgs are the args of settings_get.
type SettingsGetArgs struct {
	// DeviceID is the device whose settings to read; empty means the sender itself.
	DeviceID string `json:"device_id,omitempty"`
}

// Validate checks the args.
func (a *SettingsGetArgs) Validate() error { return optionalID("device_id", a.DeviceID) }

// MaxSettingsSize bounds a settings document.
const MaxSettingsSize = 8 * 1024

// ValidateSettingsDoc checks that raw is a settings document or patch: a JSON object that
// parses whole, as the hub (merge patch, on-connect delta) and every device will parse it. A
// number no float64 holds, such as 1e700, passes a syntax check but fails each later parse,
// so a stored document with one could never be merged or sent as a delta again. The error
// reads after the field's name ("desired must be ...").
func ValidateSettingsDoc(raw json.RawMessage) error {
	if len(raw) == 0 || raw[0] != '{' {
		return errors.New("must be a JSON object")
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && strings.HasPrefix(te.Value, "number") {
			return fmt.Errorf("has a %s that is out of range (numbers must fit a 64-bit float)", te.Value)
		}
		return errors.New("must be a JSON object")
	}
	return nil
}

func requireObject(field string, raw json.RawMessage) error {
	if len(raw) > MaxSettingsSize {
		return fieldErr(field, "at most %d bytes", MaxSettingsSize)
	}
	if err := ValidateSettingsDoc(raw); err != nil {
		return fieldErr(field, "%s", err)
	}
	return nil
}

// SettingsSetArgs are the args of settings_set, sent by a controller.
type SettingsSetArgs struct {
	// DeviceID is the device to configure.
	DeviceID string `json:"device_id"`
	// Desired is a JSON object of the settings to change (a merge patch: keys not present are
	// unchanged, null removes a key).
	Desired json.RawMessage `json:"desired"`
	// BaseVersion is the settings version the change was made against; the hub refuses the
	// write with "stale_version" if the settings have moved on since.
	BaseVersion int64 `json:"base_version"`
}

// Validate checks the args.
func (a *SettingsSetArgs) Validate() error {
	if err := requireID("device_id", a.DeviceID); err != nil {
		return err
	}
	if err := requireObject("desired", a.Desired); err != nil {
		return err
	}
	if a.BaseVersion < 0 {
		return fieldErr("base_version", "must not be negative")
	}
	return nil
}

// Settings documents a "settings" command or a settings_report is about (the doc field).
const (
	// DocDevice ("", the field omitted) is the device's own settings: desired by the owner,
	// reported by the device.
	DocDevice = ""
	// DocProfile is the account profile (height, birth year, goal steps, ...), the same
	// document for every device of the account. Each device reports only the version it
	// applied.
	DocProfile = "profile"
)

func validDoc(doc string) error {
	if doc != DocDevice && doc != DocProfile {
		return fieldErr("doc", "must be omitted or %q", DocProfile)
	}
	return nil
}

// SettingsReportArgs are the args of settings_report, sent by the configured device.
type SettingsReportArgs struct {
	// Doc is the document reported on: DocDevice (omitted) or DocProfile.
	Doc string `json:"doc,omitempty"`
	// Reported is a JSON object of the settings the device has applied. Required for the
	// device's own settings; omitted for the profile, which is the same for every device, so
	// the version says everything.
	Reported json.RawMessage `json:"reported,omitempty"`
	// Version is the desired-settings (or profile) version the device applied.
	Version int64 `json:"version"`
}

// Validate checks the args.
func (a *SettingsReportArgs) Validate() error {
	if err := validDoc(a.Doc); err != nil {
		return err
	}
	if a.Doc == DocProfile {
		if len(a.Reported) > 0 && string(a.Reported) != "null" {
			return fieldErr("reported", "must be omitted for the profile: report its version only")
		}
	} else if err := requireObject("reported", a.Reported); err != nil {
		return err
	}
	if a.Version < 0 {
		return fieldErr("version", "must not be negative")
	}
	return nil
}

// SettingsResult is the result of settings_get and settings_set.
type SettingsResult struct {
	// DeviceID is the configured device.
	DeviceID string `json:"device_id"`
	// Desired is what the owner asked for.
	Desired json.RawMessage `json:"desired"`
	// Reported is what the device last said it applied (absent if it never reported).
	Reported json.RawMessage `json:"reported,omitempty"`
	// Version is the current desired-settings version (use it as the next base_version).
	Version int64 `json:"version"`
	// ReportedVersion is the version the device last reported.
	ReportedVersion int64 `json:"reported_version"`
	// Devices, for the profile only and only for controllers and the owner, lists every
	// device of the account with the profile version it applied.
	Devices []ProfileDevice `json:"devices,omitempty"`
}

// ProfileDevice is one device's state of the account profile.
type ProfileDevice struct {
	// DeviceID is the device.
	DeviceID string `json:"device_id"`
	// AppliedVersion is the profile version the device last reported applying in its
	// current binding (0: none yet).
	AppliedVersion int64 `json:"applied_version"`
	// Behind is true while AppliedVersion is below the profile's version: the device gets
	// the profile when it next subscribes to its commands topic.
	Behind bool `json:"behind"`
}

// UnlockArgs are the args of unlock.
type UnlockArgs struct {
	// Password is the account password.
	Password string `json:"password"`
}

// Validate checks the args.
func (a *UnlockArgs) Validate() error { return requirePassword(a.Password) }

// Response is what the hub publishes on ResponseTopic for each request.
type Response struct {
	// ID is the ID of the request answered.
	ID string `json:"id"`
	// OK is true on success (Result may be set) and false on failure (Error is set).
	OK bool `json:"ok"`
	// Result is the operation's result, if it has one.
	Result json.RawMessage `json:"result,omitempty"`
	// Error says why the request failed.
	Error *ErrorBody `json:"error,omitempty"`
}

// ErrorBody is a failed request's error.
type ErrorBody struct {
	// Code is machine-readable: not_found, conflict, device_locked, not_same_account,
	// not_bound, not_pairable, not_paired, invalid, invalid_code, unauthorized, forbidden,
	// rate_limited, stale_version, internal.
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message,omitempty"`
	// Field is the request field the error is about, e.g. "args.code".
	Field string `json:"field,omitempty"`
	// CurrentVersion comes with stale_version: the version to read and write against.
	CurrentVersion *int64 `json:"current_version,omitempty"`
}

// Command types the hub sends on CommandTopic.
const (
	// CmdBound: the device was bound to an account. Args BoundArgs.
	CmdBound = "bound"
	// CmdUnbound: the device was removed from its account. No args.
	CmdUnbound = "unbound"
	// CmdPaired: the device was paired. Args PairedArgs.
	CmdPaired = "paired"
	// CmdUnpaired: a pairing ended. Args UnpairedArgs.
	CmdUnpaired = "unpaired"
	// CmdSettings: desired settings changed: the device's own, or the account profile when
	// args.doc is DocProfile. Args SettingsArgs.
	CmdSettings = "settings"
	// CmdLocate: report location now. No args.
	CmdLocate = "locate"
	// CmdRing: play a sound. No args.
	CmdRing = "ring"
	// CmdLock: lock the device. Args LockArgs.
	CmdLock = "lock"
	// CmdUnlock: the device was unlocked. No args.
	CmdUnlock = "unlock"
	// CmdWipe: erase the device's data. No args.
	CmdWipe = "wipe"
)

// CommandTypes lists every command type.
func CommandTypes() []string {
	return []string{CmdBound, CmdUnbound, CmdPaired, CmdUnpaired, CmdSettings, CmdLocate, CmdRing, CmdLock, CmdUnlock, CmdWipe}
}

// Command is an event or command the hub publishes on CommandTopic (QoS 1). Commands that ask
// the device to do something (locate, ring, lock, unlock, wipe, settings) are acknowledged
// with a command_ack request.
type Command struct {
	// ID identifies the command, for command_ack.
	ID string `json:"id"`
	// Type is one of the Cmd constants.
	Type string `json:"type"`
	// Args are the type's arguments (see the *Args types), omitted when it has none.
	Args json.RawMessage `json:"args,omitempty"`
	// IssuedAt is when the hub issued the command (RFC 3339).
	IssuedAt time.Time `json:"issued_at"`
}

// BoundArgs are the args of a "bound" command.
type BoundArgs struct {
	// AccountID is the account the device now belongs to.
	AccountID string `json:"account_id"`
	// Secret is the device's new binding secret: its MQTT password from now on (the factory
	// secret only ever allows asking for a bind code). Store it; it is sent only this once.
	Secret string `json:"secret"`
}

// LinkKeySize is the size of a pairing's link key.
const LinkKeySize = 32

// PairedArgs are the args of a "paired" command.
type PairedArgs struct {
	// PeerID is the device on the other side of the pairing.
	PeerID string `json:"peer_id"`
	// LinkKey is a 32-byte secret shared by both sides, for their direct link (e.g. BLE);
	// base64 (standard alphabet, padded) in JSON.
	LinkKey []byte `json:"link_key"`
}

// Validate checks the args (for devices decoding commands).
func (a *PairedArgs) Validate() error {
	if err := requireID("peer_id", a.PeerID); err != nil {
		return err
	}
	if len(a.LinkKey) != LinkKeySize {
		return fieldErr("link_key", "must be %d bytes", LinkKeySize)
	}
	return nil
}

// UnpairedArgs are the args of an "unpaired" command.
type UnpairedArgs struct {
	// PeerID is the device that is no longer paired.
	PeerID string `json:"peer_id"`
}

// SettingsArgs are the args of a "settings" command.
type SettingsArgs struct {
	// Doc is the document the command carries: DocDevice (omitted) for the device's own
	// settings, DocProfile for the account profile.
	Doc string `json:"doc,omitempty"`
	// Desired is, for the device's own settings, the change (a merge patch, as in
	// SettingsSetArgs.Desired); for the profile, the whole document, which replaces the
	// device's copy.
	Desired json.RawMessage `json:"desired"`
	// Version is the document's version after the change; report it back with
	// settings_report (with the same doc) once applied.
	Version int64 `json:"version"`
}

// Validate checks the args (for devices decoding commands).
func (a *SettingsArgs) Validate() error {
	if err := validDoc(a.Doc); err != nil {
		return err
	}
	if err := requireObject("desired", a.Desired); err != nil {
		return err
	}
	if a.Version < 0 {
		return fieldErr("version", "must not be negative")
	}
	return nil
}

// LockArgs are the args of a "lock" command.
type LockArgs struct {
	// Message is shown on the locked screen (at most 256 bytes).
	Message string `json:"message,omitempty"`
	// ContactNumber is a phone number shown for a finder to call (E.164); in lost mode it is
	// the only number the phone may call.
	ContactNumber string `json:"contact_number,omitempty"`
	// ReportIntervalS is how often, in seconds, the phone reports its location while in lost
	// mode (0: the phone's own default).
	ReportIntervalS int `json:"report_interval_s,omitempty"`
}

// SyncEntry is what the hub publishes on SyncTopic: one telemetry sample of one device,
// relayed to a controller.
type SyncEntry struct {
	// Cursor is the entry's position in the account's sync log, increasing; acknowledge it
	// with sync_ack.
	Cursor int64 `json:"cursor"`
	// Device is the device that published the sample.
	Device string `json:"device"`
	// Stream is the telemetry stream.
	Stream string `json:"stream"`
	// Seq is the source device's sequence number of the sample.
	Seq uint64 `json:"seq"`
	// TS is when the sample was taken, by the source device's clock.
	TS time.Time `json:"ts"`
	// Data is the sample's body (Telemetry.Body: the stream's fields without seq and ts).
	Data json.RawMessage `json:"data"`
	// Gap, when set, says that entries with cursors From..To (inclusive) are lost for this
	// controller (they expired before it came back) and will not be delivered.
	Gap *Gap `json:"gap,omitempty"`
}

// Gap is a range of sync cursors that will not be delivered.
type Gap struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// OpCommand: a controller issues an owner command (locate, ring, lock, unlock, wipe) to
// another device of its account. Args CommandArgs; result the stored command (id, state, ...).
const OpCommand = "command"

// CommandArgs are the args of command.
type CommandArgs struct {
	// DeviceID is the device to command (not the sender).
	DeviceID string `json:"device_id"`
	// Type is locate, ring, lock, unlock or wipe.
	Type string `json:"type"`
	// Message is shown on the locked screen (lock only, at most 256 bytes).
	Message string `json:"message,omitempty"`
	// ContactNumber is the number a finder may call (lock only, required there).
	ContactNumber string `json:"contact_number,omitempty"`
}

// Validate checks the args.
func (a *CommandArgs) Validate() error {
	if err := requireID("device_id", a.DeviceID); err != nil {
		return err
	}
	switch a.Type {
	case CmdLocate, CmdRing, CmdLock, CmdUnlock, CmdWipe:
	default:
		return fieldErr("type", "must be one of locate, ring, lock, unlock, wipe")
	}
	if len(a.Message) > 256 {
		return fieldErr("message", "at most 256 bytes")
	}
	if len(a.ContactNumber) > 32 {
		return fieldErr("contact_number", "at most 32 characters")
	}
	return nil
}
