package simulator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/devices/phonesim"
)

// device is one simulated device of the story: its credentials, its current connection,
// and the commands read from it while waiting for another one.
//
// A phone is a devices.PhoneModel run by devices/phonesim: the runner reads the connection's
// commands, applies them to the model and acknowledges them (settings and profile included,
// with their reports), as the phone app would; the story only watches what it handled. A
// gadget's commands are read by the story itself.
type device struct {
	id      string
	typ     devices.Type
	factory string // factory secret (gadgets)
	secret  string // binding secret; "" while unbound
	conn    *client.Client
	seen    []handled
	seq     map[string]uint64 // last telemetry seq per stream
	log     *slog.Logger
	// settings is what a gadget applied from "settings" commands: its own settings and the
	// account profile. It outlives connections, as firmware keeps it in flash.
	settings *devices.SettingsModel
	// phone is a phone's state (lost mode, settings, data); it outlives connections like
	// the app's storage. runner drives it while connected and reports to handled.
	phone   *devices.PhoneModel
	runner  *phonesim.Runner
	handled *handledQueue
}

// handled is a command and what the device made of it (the zero outcome for a gadget, whose
// commands the story handles itself).
type handled struct {
	cmd devices.Command
	out devices.CommandOutcome
}

func newDevice(id string, typ devices.Type, log *slog.Logger) *device {
	d := &device{id: id, typ: typ, seq: map[string]uint64{}, log: log.With("device", id)}
	if devices.IsController(typ) {
		d.phone = devices.NewPhoneModel()
	} else {
		d.settings = devices.NewSettingsModel()
	}
	return d
}

// connect (re)connects the device with secret. clean=false keeps the broker session, so
// commands sent while the device was offline arrive when it comes back. A phone's runner
// starts on the new connection with the phone's model.
func (d *device) connect(ctx context.Context, t Target, secret string, clean bool) error {
	d.disconnect()
	c, err := client.Connect(ctx, client.Options{Broker: t.MQTT, DeviceID: d.id, Secret: secret, CleanSession: clean, Logger: d.log})
	if err != nil {
		return err
	}
	d.conn, d.seen = c, nil
	if d.phone != nil {
		q := newHandledQueue()
		d.handled = q
		d.runner = phonesim.Start(phonesim.Options{Client: c, Phone: d.phone, Logger: d.log,
			OnCommand: func(cmd devices.Command, out devices.CommandOutcome) { q.push(handled{cmd, out}) }})
	}
	return nil
}

func (d *device) disconnect() {
	if d.runner != nil {
		d.runner.Close()
		d.runner = nil
	}
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
}

// request sends an MQTT request as the device.
func (d *device) request(ctx context.Context, op string, args any) (json.RawMessage, error) {
	if d.conn == nil {
		return nil, fmt.Errorf("%s: %s while offline", d.id, op)
	}
	return d.conn.Request(ctx, op, args)
}

// waitCommand returns the first command of type typ (and matching match, when set), keeping
// the others it reads for later calls.
func (d *device) waitCommand(ctx context.Context, typ string, match func(devices.Command) bool) (devices.Command, error) {
	h, err := d.waitHandled(ctx, typ, match)
	return h.cmd, err
}

// waitHandled is waitCommand with the outcome: for a phone, the command has been applied and
// (when it asks for one) acknowledged by the time it is returned.
func (d *device) waitHandled(ctx context.Context, typ string, match func(devices.Command) bool) (handled, error) {
	ok := func(h handled) bool { return h.cmd.Type == typ && (match == nil || match(h.cmd)) }
	for i, h := range d.seen {
		if ok(h) {
			d.seen = append(d.seen[:i], d.seen[i+1:]...)
			return h, nil
		}
	}
	if d.conn == nil {
		return handled{}, fmt.Errorf("%s: waiting for %q while offline", d.id, typ)
	}
	for {
		h, err := d.next(ctx)
		if err != nil {
			return handled{}, fmt.Errorf("%s: no %q command: %w", d.id, typ, err)
		}
		if ok(h) {
			return h, nil
		}
		d.seen = append(d.seen, h)
	}
}

// next is the next command the device received: from the phone's runner, or from a gadget's
// connection.
func (d *device) next(ctx context.Context) (handled, error) {
	if d.handled != nil {
		return d.handled.pop(ctx)
	}
	select {
	case c, open := <-d.conn.Commands():
		if !open {
			return handled{}, errors.New("connection closed")
		}
		return handled{cmd: c}, nil
	case <-ctx.Done():
		return handled{}, ctx.Err()
	}
}

// applySettings waits for the "settings" command for doc at version (or later), applied,
// acknowledged and reported as the device does (a phone's runner does it with its
// PhoneModel; a gadget with its SettingsModel here), and returns its args.
func (d *device) applySettings(ctx context.Context, doc string, version int64) (devices.SettingsArgs, error) {
	var args devices.SettingsArgs
	h, err := d.waitHandled(ctx, devices.CmdSettings, func(c devices.Command) bool {
		var a devices.SettingsArgs
		return json.Unmarshal(c.Args, &a) == nil && a.Doc == doc && a.Version >= version
	})
	if err != nil {
		return args, err
	}
	_ = json.Unmarshal(h.cmd.Args, &args)
	if d.phone != nil {
		if h.out.Status != devices.AckAcknowledged || h.out.Report == nil {
			return args, fmt.Errorf("%s: the phone did not apply settings %s: %s %s", d.id, h.cmd.ID, h.out.Status, h.out.Detail)
		}
		return args, nil
	}
	if err := d.conn.ApplySettings(ctx, d.settings, h.cmd); err != nil {
		return args, fmt.Errorf("%s: %w", d.id, err)
	}
	return args, nil
}

// handledQueue is the commands a phone's runner handled, in order. push never blocks the
// runner (it must go on acknowledging while the story does something else).
type handledQueue struct {
	mu     sync.Mutex
	items  []handled
	notify chan struct{}
}

func newHandledQueue() *handledQueue { return &handledQueue{notify: make(chan struct{}, 1)} }

func (q *handledQueue) push(h handled) {
	q.mu.Lock()
	q.items = append(q.items, h)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *handledQueue) pop(ctx context.Context) (handled, error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			h := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return h, nil
		}
		q.mu.Unlock()
		select {
		case <-q.notify:
		case <-ctx.Done():
			return handled{}, ctx.Err()
		}
	}
}

// bindCode asks the hub for the code the gadget shows.
func (d *device) bindCode(ctx context.Context) (string, error) {
	raw, err := d.request(ctx, devices.OpBindCode, nil)
	if err != nil {
		return "", fmt.Errorf("bind_code: %w", err)
	}
	res, err := decodeInto[devices.BindCodeResult](raw)
	if err != nil {
		return "", err
	}
	if len(res.Code) != 6 {
		return "", fmt.Errorf("bind_code answered %q", res.Code)
	}
	return res.Code, nil
}

// awaitBound waits for the "bound" command and reconnects with the binding secret it carries.
func (d *device) awaitBound(ctx context.Context, t Target, accountID string) error {
	cmd, err := d.waitCommand(ctx, devices.CmdBound, nil)
	if err != nil {
		return err
	}
	args, err := decodeInto[devices.BoundArgs](cmd.Args)
	if err != nil {
		return err
	}
	if args.Secret == "" || args.AccountID != accountID {
		return fmt.Errorf("bound command for account %q (want %q), secret set %v", args.AccountID, accountID, args.Secret != "")
	}
	d.secret = args.Secret
	// Clean sessions throughout: what a gadget must get after being away (settings) the hub
	// sends when it subscribes after every connect. (A resumed session with messages in flight also runs into the
	// broker refusing the client's next SUBSCRIBE with 0x91, packet identifier in use.)
	if err := d.connect(ctx, t, d.secret, true); err != nil {
		return fmt.Errorf("reconnect with the binding secret: %w", err)
	}
	return nil
}

// publish sends the next telemetry sample of stream at QoS 1 and returns its seq.
func (d *device) publish(ctx context.Context, stream string, body any) (uint64, error) {
	if d.conn == nil {
		return 0, fmt.Errorf("%s: telemetry while offline", d.id)
	}
	d.seq[stream]++
	seq := d.seq[stream]
	if err := d.conn.PublishTelemetry(ctx, stream, seq, time.Now(), body); err != nil {
		return 0, fmt.Errorf("%s %s seq %d: %w", d.id, stream, seq, err)
	}
	return seq, nil
}

// inbox collects the sync entries a phone receives, in arrival order.
type inbox struct {
	mu      sync.Mutex
	entries []devices.SyncEntry
	bad     []string
	notify  chan struct{}
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{}, 1)} }

// handler is the MQTT handler for the account's sync filter. It never blocks paho.
func (in *inbox) handler(topic string, payload []byte) {
	var e devices.SyncEntry
	err := json.Unmarshal(payload, &e)
	in.mu.Lock()
	if err != nil {
		in.bad = append(in.bad, fmt.Sprintf("%s: %v", topic, err))
	} else {
		in.entries = append(in.entries, e)
	}
	in.mu.Unlock()
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

// snapshot returns a copy of what arrived so far.
func (in *inbox) snapshot() ([]devices.SyncEntry, []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]devices.SyncEntry(nil), in.entries...), append([]string(nil), in.bad...)
}

// waitFor waits until done holds for the entries received so far.
func (in *inbox) waitFor(ctx context.Context, what string, done func([]devices.SyncEntry) bool) ([]devices.SyncEntry, error) {
	for {
		es, bad := in.snapshot()
		if len(bad) > 0 {
			return es, fmt.Errorf("undecodable sync entries: %s", strings.Join(bad, "; "))
		}
		if done(es) {
			return es, nil
		}
		select {
		case <-in.notify:
		case <-ctx.Done():
			return es, fmt.Errorf("waiting for %s (%d entries so far): %w", what, len(es), ctx.Err())
		}
	}
}

// fromDevice filters entries by source device and stream ("" for any stream), dropping
// repeated cursors (QoS 1 may deliver twice).
func fromDevice(es []devices.SyncEntry, dev, stream string) (out []devices.SyncEntry, dups int) {
	seen := map[int64]bool{}
	for _, e := range es {
		if e.Device != dev || (stream != "" && e.Stream != stream) {
			continue
		}
		if seen[e.Cursor] {
			dups++
			continue
		}
		seen[e.Cursor] = true
		out = append(out, e)
	}
	return out, dups
}

// sortedByCursor returns the entries in cursor order: the order the hub relays them in.
func sortedByCursor(es []devices.SyncEntry) []devices.SyncEntry {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b devices.SyncEntry) int { return cmp.Compare(a.Cursor, b.Cursor) })
	return out
}
