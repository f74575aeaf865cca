// Package hub is devicehub's domain: accounts, devices, bindings, pairings, the sync log and
// commands, with the interfaces it needs from the outside (Store, Publisher, Notifier, Clock).
// It imports no MQTT, SQL, HTTP or viper package; the broker hooks and HTTP handlers call
// into it, and the SQLite store implements its Store.
package hub

import (
	"context"
	"log/slog"
	"time"
)

// Clock tells the time; tests use a fake one to expire codes without waiting.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// Publisher sends messages to devices over whatever transport carries them (the embedded
// broker today). Topics come from the devices package's topic scheme.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte) error
}

// Options are the hub's dependencies and settings.
type Options struct {
	Store     Store
	Notifier  Notifier
	Publisher Publisher
	Clock     Clock
	Logger    *slog.Logger
	// Accounts tunes codes, sessions and anti-automation limits (account_service.go).
	Accounts AccountOptions
	// Sync keeps pairings, the sync log and settings (nil: those features are off).
	Sync SyncStore
	// SyncOptions tune the sync log and relay (sync_relay.go).
	SyncOptions SyncOptions
	// Commands keeps owner commands and lost mode (nil: those features are off).
	Commands CommandStore
	// CommandOptions tune command expiry and lost mode (commands.go).
	CommandOptions CommandOptions
}

// Hub is the domain service. Its methods are safe for concurrent use.
type Hub struct {
	store     Store
	notifier  Notifier
	publisher Publisher
	clock     Clock
	log       *slog.Logger
	acc       *accounts
	dev       *deviceState
	sync      *syncState    // nil without Options.Sync
	cmd       *commandState // nil without Options.Commands
}

// New builds the hub.
func New(opts Options) *Hub {
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{store: opts.Store, notifier: opts.Notifier, publisher: opts.Publisher, clock: opts.Clock, log: opts.Logger,
		acc: newAccounts(opts.Accounts), dev: newDeviceState(), cmd: newCommandState(opts.Commands, opts.CommandOptions)}
	if opts.Sync != nil {
		h.sync = newSyncState(opts.Sync, opts.SyncOptions)
	}
	return h
}
