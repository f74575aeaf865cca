package hub

import (
	"context"
	"encoding/json"
	"time"
)

// SyncRecord is one entry of an account's sync log: one accepted telemetry sample.
type SyncRecord struct {
	// Cursor is the entry's position, increasing in commit order (shared by all accounts, so
	// an account's cursors are increasing but not consecutive).
	Cursor    int64
	AccountID string
	DeviceID  string
	Stream    string
	Seq       uint64
	TS        time.Time
	// Wide marks account-wide entries (telemetry of phones, tablets, routers): every
	// controller of the account receives them; other entries go to the controllers paired
	// with the source.
	Wide      bool
	Data      json.RawMessage
	CreatedAt time.Time
}

// Pairing joins a controller and a gadget of one account.
type Pairing struct {
	ControllerID string
	GadgetID     string
	AccountID    string
	CreatedAt    time.Time
}

// PairingNotice is what a device must still be told about one of its pairings: Type is
// devices.CmdPaired (with the link key) or devices.CmdUnpaired. ID is the command ID the
// device acknowledges; until then the notice is sent again each time it subscribes.
type PairingNotice struct {
	ID        string
	DeviceID  string
	PeerID    string
	Type      string
	LinkKey   []byte
	CreatedAt time.Time
}

// TelemetryQuery selects a device's stored samples for the HTTP API, oldest first.
type TelemetryQuery struct {
	AccountID string
	DeviceID  string
	Stream    string // "" for every stream
	From, To  time.Time
	// After is the cursor of the last entry of the previous page (0 for the first page).
	After int64
	Limit int
}

// SyncStore keeps pairings, the sync log, controller cursors and settings documents.
type SyncStore interface {
	// AppendSync stores a sample durably and returns after the commit that holds it (commits
	// are shared by every sample waiting at that moment). stored is false when the sample
	// was a duplicate (same account, device, stream and seq) and nothing was written.
	AppendSync(ctx context.Context, r SyncRecord) (stored bool, err error)
	// AppendSyncAsync queues a sample for the next shared commit and returns a function
	// that waits for that commit (same answer as AppendSync). Samples commit in the order
	// they were queued.
	AppendSyncAsync(ctx context.Context, r SyncRecord) (wait func(context.Context) (stored bool, err error), err error)
	// SyncEntriesFor returns up to limit entries after cursor that controllerID of accountID
	// may receive (account-wide entries of other devices, and entries of gadgets paired with
	// it), in cursor order, and how far retention has deleted the account's log.
	SyncEntriesFor(ctx context.Context, controllerID, accountID string, after int64, limit int) (entries []SyncRecord, prunedThrough int64, err error)
	// SyncCursor is the controller's durable cursor (0 when it never acknowledged).
	SyncCursor(ctx context.Context, controllerID string) (int64, error)
	// AckSync raises the controller's durable cursor to cursor (never lowers it).
	AckSync(ctx context.Context, controllerID, accountID string, cursor int64, at time.Time) error
	// PruneSync deletes entries created before olderThan and, per account, all but the
	// newest maxPerAccount (0: no size bound), at most batch entries per call, and records
	// how far each account was pruned. It returns how many entries it deleted.
	PruneSync(ctx context.Context, olderThan time.Time, maxPerAccount, batch int) (int, error)
	// Telemetry returns stored samples of one device for its owner.
	Telemetry(ctx context.Context, q TelemetryQuery) ([]SyncRecord, error)

	// CreatePairing stores a pairing and the notices that tell both sides, in one
	// transaction; conflict when it exists.
	CreatePairing(ctx context.Context, p Pairing, notices ...PairingNotice) error
	// DeletePairing removes a pairing and stores the notices that tell both sides, in one
	// transaction; not_found when there is none.
	DeletePairing(ctx context.Context, controllerID, gadgetID string, notices ...PairingNotice) error
	// ReplacePairingNotices deletes every notice of forget (a device that was unbound: it
	// is told so instead) and stores put, in one transaction. A stored notice replaces the
	// one for the same device and peer.
	ReplacePairingNotices(ctx context.Context, forget string, put []PairingNotice) error
	// PairingNotices lists the device's notices, oldest first.
	PairingNotices(ctx context.Context, deviceID string) ([]PairingNotice, error)
	// DeletePairingNotice removes one notice the device acknowledged; it reports whether
	// there was one.
	DeletePairingNotice(ctx context.Context, deviceID, id string) (bool, error)
	// PairingsOf lists the pairings a device is part of, on either side.
	PairingsOf(ctx context.Context, deviceID string) ([]Pairing, error)

	// Settings returns a settings document; not_found when none was ever written.
	Settings(ctx context.Context, owner, name string) (SettingsDoc, error)
	// SetDesired replaces the desired document and bumps its version, if the version is
	// still baseVersion (0: no document yet); stale_version otherwise. The hub computes the
	// document (merge patch); the store only makes the check-and-write atomic.
	SetDesired(ctx context.Context, owner, name, accountID string, desired json.RawMessage, baseVersion int64, at time.Time) (SettingsDoc, error)
	// SetReported replaces the reported document and its version.
	SetReported(ctx context.Context, owner, name, accountID string, reported json.RawMessage, version int64, at time.Time) (SettingsDoc, error)
}
