// Package notify delivers the hub's messages (verification codes, notices). The Outbox is the
// hub's Notifier: it writes each message to the durable outbox table, and its worker sends
// pending ones through a Sender (SMTP email, an HTTP webhook for an SMS gateway) with retries
// and exponential back-off, recording each attempt. With no Sender (the "outbox" driver)
// messages are kept in the outbox, held, for development: `devicehub outbox list` and the
// admin endpoint show them.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// Sender delivers one message. An error means "try again later".
type Sender interface {
	Send(ctx context.Context, m hub.Message) error
}

// Store is the part of the hub store the outbox uses.
type Store interface {
	EnqueueMessage(ctx context.Context, m hub.Message) error
	DueMessages(ctx context.Context, now time.Time, limit int) ([]hub.Message, error)
	RecordDelivery(ctx context.Context, m hub.Message) error
}

// Options configure an Outbox.
type Options struct {
	Store Store
	// Sender delivers messages; nil keeps them in the outbox (status held).
	Sender Sender
	Clock  hub.Clock
	Logger *slog.Logger
	// MaxAttempts before a message is marked failed (8).
	MaxAttempts int
	// RetryBase is the wait after the first failure (2 s); it doubles up to RetryMax (10 min).
	RetryBase, RetryMax time.Duration
	// PollEvery is how often the worker looks for due retries (1 s); new messages wake it.
	PollEvery time.Duration
	// SendTimeout bounds one delivery attempt (30 s).
	SendTimeout time.Duration
}

// Outbox is the hub's Notifier and the delivery worker.
type Outbox struct {
	opts Options
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	cancel  context.CancelFunc
	stopped chan struct{}
}

// New builds an Outbox; call Start to run its worker.
func New(opts Options) *Outbox {
	if opts.Clock == nil {
		opts.Clock = hub.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 2 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 10 * time.Minute
	}
	if opts.PollEvery <= 0 {
		opts.PollEvery = time.Second
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	return &Outbox{opts: opts, log: opts.Logger, wake: make(chan struct{}, 1)}
}

// Notify writes m to the outbox and wakes the worker. It returns once m is durable.
func (o *Outbox) Notify(ctx context.Context, m hub.Message) error {
	m.Status = hub.MessagePending
	if o.opts.Sender == nil {
		m.Status = hub.MessageHeld
	}
	m.Attempts, m.LastError, m.SentAt = 0, "", time.Time{}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = o.opts.Clock.Now()
	}
	m.NextAttemptAt = m.CreatedAt
	if err := o.opts.Store.EnqueueMessage(ctx, m); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// Start runs the worker until Stop. Without a Sender there is nothing to run.
func (o *Outbox) Start() {
	if o.opts.Sender == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel, o.stopped = cancel, make(chan struct{})
	go o.loop(ctx)
}

// Stop ends the worker after the attempt under way (which its context cancels).
func (o *Outbox) Stop() {
	o.mu.Lock()
	cancel, stopped := o.cancel, o.stopped
	o.cancel = nil
	o.mu.Unlock()
	if cancel != nil {
		cancel()
		<-stopped
	}
}

func (o *Outbox) loop(ctx context.Context) {
	defer close(o.stopped)
	t := time.NewTicker(o.opts.PollEvery)
	defer t.Stop()
	for {
		if _, err := o.RunOnce(ctx); err != nil && ctx.Err() == nil {
			o.log.Error("outbox delivery", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-t.C:
		}
	}
}

// RunOnce attempts every message due now and returns how many were sent. Tests call it with
// a fake clock instead of running the worker.
func (o *Outbox) RunOnce(ctx context.Context) (int, error) {
	if o.opts.Sender == nil {
		return 0, nil
	}
	sent := 0
	for {
		due, err := o.opts.Store.DueMessages(ctx, o.opts.Clock.Now(), 50)
		if err != nil {
			return sent, fmt.Errorf("outbox: %w", err)
		}
		if len(due) == 0 {
			return sent, nil
		}
		for _, m := range due {
			ok, err := o.attempt(ctx, m)
			if err != nil {
				return sent, err
			}
			if ok {
				sent++
			}
		}
		if len(due) < 50 {
			return sent, nil
		}
	}
}

// attempt sends m once and records the outcome; a failure schedules the next try.
func (o *Outbox) attempt(ctx context.Context, m hub.Message) (bool, error) {
	sctx, cancel := context.WithTimeout(ctx, o.opts.SendTimeout)
	err := o.opts.Sender.Send(sctx, m)
	cancel()
	if err != nil && ctx.Err() != nil {
		return false, ctx.Err() // shutting down: the message stays due for next time
	}
	now := o.opts.Clock.Now()
	m.Attempts++
	if err == nil {
		m.Status, m.SentAt, m.LastError = hub.MessageSent, now, ""
		o.log.Info("message sent", "id", m.ID, "channel", m.Channel, "attempts", m.Attempts)
	} else {
		m.LastError = truncate(err.Error(), 500)
		if m.Attempts >= o.opts.MaxAttempts {
			m.Status = hub.MessageFailed
			o.log.Error("message failed for good", "id", m.ID, "channel", m.Channel, "attempts", m.Attempts, "error", err)
		} else {
			m.NextAttemptAt = now.Add(o.retryAfter(m.Attempts))
			o.log.Warn("message delivery failed; will retry", "id", m.ID, "channel", m.Channel, "attempts", m.Attempts, "next", m.NextAttemptAt, "error", err)
		}
	}
	if rerr := o.opts.Store.RecordDelivery(context.WithoutCancel(ctx), m); rerr != nil {
		return false, fmt.Errorf("outbox: record %s: %w", m.ID, errors.Join(rerr, err))
	}
	return err == nil, nil
}

// retryAfter is RetryBase·2^(attempts-1), capped at RetryMax.
func (o *Outbox) retryAfter(attempts int) time.Duration {
	d := o.opts.RetryBase
	for i := 1; i < attempts && d < o.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, o.opts.RetryMax)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
