package simulator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
)

// device is one simulated device of the story: its credentials, its current connection,
// and the commands read from it while waiting for another one.
type device struct {
	id      string
	typ     devices.Type
	factory string // factory secret (gadgets)
	secret  string // binding secret; "" while unbound
	conn    *client.Client
	seen    []devices.Command
	seq     map[string]uint64 // last telemetry seq per stream
	// settings is what the device applied from "settings" commands: its own settings and
	// the account profile. It outlives connections, as firmware keeps it in flash.
	settings *devices.SettingsModel
}

func newDevice(id string, typ devices.Type) *device {
	return &device{id: id, typ: typ, seq: map[string]uint64{}, settings: devices.NewSettingsModel()}
}

// connect (re)connects the device with secret. clean=false keeps the broker session, so
// commands sent while the device was offline arrive when it comes back.
func (d *device) connect(ctx context.Context, t Target, secret string, clean bool) error {
	d.disconnect()
	c, err := client.Connect(ctx, client.Options{Broker: t.MQTT, DeviceID: d.id, Secret: secret, CleanSession: clean})
	if err != nil {
		return err
	}
	d.conn, d.seen = c, nil
	return nil
}

func (d *device) disconnect() {
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
	ok := func(c devices.Command) bool { return c.Type == typ && (match == nil || match(c)) }
	for i, c := range d.seen {
		if ok(c) {
			d.seen = append(d.seen[:i], d.seen[i+1:]...)
			return c, nil
		}
	}
	if d.conn == nil {
		return devices.Command{}, fmt.Errorf("%s: waiting for %q while offline", d.id, typ)
	}
	for {
		select {
		case c, open := <-d.conn.Commands():
			if !open {
				return devices.Command{}, fmt.Errorf("%s: connection closed while waiting for %q", d.id, typ)
			}
			if ok(c) {
				return c, nil
			}
			d.seen = append(d.seen, c)
		case <-ctx.Done():
			return devices.Command{}, fmt.Errorf("%s: no %q command: %w", d.id, typ, ctx.Err())
		}
	}
}

// applySettings waits for the "settings" command for doc at version (or later), applies it
// as the device would, acknowledges it and reports what the device holds now.
func (d *device) applySettings(ctx context.Context, doc string, version int64) (devices.SettingsArgs, error) {
	var args devices.SettingsArgs
	cmd, err := d.waitCommand(ctx, devices.CmdSettings, func(c devices.Command) bool {
		var a devices.SettingsArgs
		return json.Unmarshal(c.Args, &a) == nil && a.Doc == doc && a.Version >= version
	})
	if err != nil {
		return args, err
	}
	_ = json.Unmarshal(cmd.Args, &args)
	if err := d.conn.ApplySettings(ctx, d.settings, cmd); err != nil {
		return args, fmt.Errorf("%s: %w", d.id, err)
	}
	return args, nil
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

// handset is the phone's own behaviour in lost mode (docs/protocol.md): while locked it only
// calls the number the owner left on the lock screen, and emergency numbers.
type handset struct {
	locked  bool
	contact string
}

var errCallRefused = errors.New("call refused: the phone is locked")

// call places a call, or refuses it in lost mode.
func (h *handset) call(number string) error {
	n := normalizeNumber(number)
	if n == "112" || n == "911" {
		return nil // emergency calls always go through
	}
	if h.locked && n != normalizeNumber(h.contact) {
		return fmt.Errorf("%w (only %s can be called)", errCallRefused, h.contact)
	}
	return nil
}

// normalizeNumber keeps + and digits, so "+1 (415) 555-0123" and "+14155550123" match.
func normalizeNumber(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '+' || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}
