// Package phonesim runs a devices.PhoneModel on a devices/client connection: it applies the
// hub's commands and acknowledges them, reports the settings and account profile it applied,
// reports the location on locate and, in lost mode, at the interval the lock command set,
// and carries the phone's own lost-mode actions (the password unlock, signing out) to the
// hub. It is "a phone" wherever one is simulated: every phone of `devicehub sim scenario`
// and `sim load` (simulator/devices.go, simulator/load.go) and the end-to-end tests.
package phonesim

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
)

// requestTimeout bounds each request the runner makes on its own (acks, location samples).
const requestTimeout = 10 * time.Second

// Options configure a Runner.
type Options struct {
	// Client is the phone's connection; the runner reads its Commands channel, so nothing
	// else may.
	Client *client.Client
	// Phone is the model to drive (default: a new one).
	Phone *devices.PhoneModel
	// Position returns where the phone is now (default: a fixed point).
	Position func() devices.LocationSample
	// FirstSeq is the first location sample's seq (default: the current Unix time in
	// milliseconds, so a restarted phone keeps its seqs increasing and nothing it sends is
	// taken for a repeat).
	FirstSeq uint64
	// OnCommand, when set, is called after each command was applied (tests and the
	// simulator watch progress with it).
	OnCommand func(cmd devices.Command, out devices.CommandOutcome)
	Logger    *slog.Logger
}

// Runner is a running phone. Close stops it.
type Runner struct {
	opts  Options
	phone *devices.PhoneModel
	log   *slog.Logger
	seq   atomic.Uint64
	wake  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	stop  context.CancelFunc
	ctx   context.Context
}

// Start runs the phone until Close (or until the client is closed).
func Start(opts Options) *Runner {
	if opts.Phone == nil {
		opts.Phone = devices.NewPhoneModel()
	}
	if opts.Position == nil {
		opts.Position = func() devices.LocationSample {
			return devices.LocationSample{Lat: 52.52, Lon: 13.405, AccuracyM: 12}
		}
	}
	if opts.FirstSeq == 0 {
		opts.FirstSeq = uint64(time.Now().UnixMilli())
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &Runner{opts: opts, phone: opts.Phone, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), ctx: ctx, stop: stop}
	r.seq.Store(opts.FirstSeq - 1)
	r.wg.Add(1)
	go r.run()
	return r
}

// Phone is the model the runner drives.
func (r *Runner) Phone() *devices.PhoneModel { return r.phone }

// Close stops the runner (not the client) and waits for it.
func (r *Runner) Close() {
	r.once.Do(func() {
		r.stop()
		close(r.done)
	})
	r.wg.Wait()
}

func (r *Runner) run() {
	defer r.wg.Done()
	var timer *time.Timer
	var tick <-chan time.Time
	reschedule := func() {
		if timer != nil {
			timer.Stop()
			timer, tick = nil, nil
		}
		if d := r.phone.ReportInterval(); d > 0 {
			timer = time.NewTimer(d)
			tick = timer.C
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	reschedule()
	for {
		select {
		case <-r.done:
			return
		case <-r.wake:
			reschedule()
		case cmd, ok := <-r.opts.Client.Commands():
			if !ok {
				return
			}
			r.handle(cmd)
			reschedule()
		case <-tick:
			if err := r.ReportLocation(r.ctx); err != nil && r.ctx.Err() == nil {
				r.log.Warn("lost mode location report", "error", err)
			}
			reschedule()
		}
	}
}

func (r *Runner) handle(cmd devices.Command) {
	out := r.phone.HandleCommand(cmd)
	if out.ReportLocation {
		if err := r.ReportLocation(r.ctx); err != nil && r.ctx.Err() == nil {
			r.log.Warn("location report", "command", cmd.ID, "error", err)
		}
	}
	if out.Ack {
		ctx, cancel := context.WithTimeout(r.ctx, requestTimeout)
		err := r.opts.Client.Ack(ctx, cmd.ID, out.Status, out.Detail)
		cancel()
		if err != nil && r.ctx.Err() == nil {
			// Not fatal: the hub sends unacknowledged commands again on reconnect, and the
			// model acknowledges repeats without applying them twice.
			r.log.Warn("acknowledge command", "command", cmd.ID, "error", err)
		}
	}
	if out.Report != nil {
		ctx, cancel := context.WithTimeout(r.ctx, requestTimeout)
		err := r.opts.Client.ReportSettings(ctx, *out.Report)
		cancel()
		if err != nil && r.ctx.Err() == nil {
			// Not fatal either: a device whose report did not arrive is still behind for the
			// hub, which sends the settings again when it next subscribes.
			r.log.Warn("report settings", "command", cmd.ID, "error", err)
		}
	}
	if r.opts.OnCommand != nil {
		r.opts.OnCommand(cmd, out)
	}
}

// ReportLocation sends one location sample now.
func (r *Runner) ReportLocation(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return r.opts.Client.PublishTelemetry(ctx, devices.StreamLocation, r.seq.Add(1), time.Now(), r.opts.Position())
}

// Unlock sends the account password typed on the phone to the hub ("unlock" op). The phone
// leaves lost mode only when the hub says yes; a wrong password comes back as the hub's
// *client.RemoteError (unauthorized, then rate_limited).
func (r *Runner) Unlock(ctx context.Context, password string) error {
	if _, err := r.opts.Client.Request(ctx, devices.OpUnlock, devices.UnlockArgs{Password: password}); err != nil {
		return err
	}
	r.phone.PasswordAccepted()
	r.poke()
	return nil
}

// ErrLocked is returned (wrapped with the phone's refusal) by SignOut in lost mode.
var ErrLocked = errors.New("phone is in lost mode")

// SignOut unbinds the phone from its account with the account password. The phone refuses
// by itself in lost mode; the hub would refuse as well (see SignOutAnyway).
func (r *Runner) SignOut(ctx context.Context, password string) error {
	if err := r.phone.SignOut(); err != nil {
		return errors.Join(ErrLocked, err)
	}
	return r.SignOutAnyway(ctx, password)
}

// SignOutAnyway sends the unbind request without asking the model: what a tampered phone
// would do. The hub refuses it while the phone is in lost mode.
func (r *Runner) SignOutAnyway(ctx context.Context, password string) error {
	_, err := r.opts.Client.Request(ctx, devices.OpUnbind, devices.UnbindArgs{Password: password})
	return err
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
