package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/devices/phonesim"
	"github.com/devicehub/devicehub/hub"
)

// LoadOptions configure RunLoad.
type LoadOptions struct {
	Target Target
	// Accounts and the devices each has. Every gadget is paired with one phone of its
	// account (round robin), so each sample has exactly one expected receiver.
	Accounts         int
	BandsPerAccount  int
	ScalesPerAccount int
	PhonesPerAccount int
	// Rate is messages per second per gadget; Duration how long gadgets publish.
	Rate     float64
	Duration time.Duration
	// QoS of telemetry publishes and of the phones' sync subscriptions (0 or 1).
	QoS byte
	// Concurrency bounds connection attempts and requests in flight at once (default 200).
	Concurrency int
	// Settle is how long delivery may make no progress after publishing ends before what
	// has not arrived is counted lost (default 10s).
	Settle time.Duration
	// PublishTimeout bounds each publish, PUBACK included (default 30s); one that takes
	// longer counts as a publish error.
	PublishTimeout time.Duration
	// Progress, when set, is told what the run is doing.
	Progress Progress
	Logger   *slog.Logger
}

// Progress receives a load run's phases and counts; NewProgress gives a bar or plain lines.
type Progress interface {
	// Phase starts a phase of total steps (0 when unknown).
	Phase(name string, total int64)
	// Add counts done steps of the current phase.
	Add(n int64)
	// Status shows a line of counters.
	Status(line string)
	// Done ends the current phase.
	Done()
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// LoadResult is what a load run measured. Latency runs from just before the publish to the
// sample's receipt at its phone.
type LoadResult struct {
	Accounts int `json:"accounts"`
	Devices  int `json:"devices"`
	// ConnectMS is how long connecting every device took (all at once, bounded concurrency).
	ConnectMS int64 `json:"connect_ms"`
	// Sent publishes attempted; Acked those the broker acknowledged (QoS 1; for QoS 0 every
	// publish written); Delivered distinct samples received by the phone they were meant
	// for; Lost acknowledged samples that never arrived; Duplicates repeated receipts.
	Sent       int64 `json:"sent"`
	Acked      int64 `json:"acked"`
	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	// Misrouted samples arrived at a phone that is not paired with their gadget.
	Misrouted int64 `json:"misrouted"`
	// PublishErrors are publishes that failed (timeouts, disconnections). Unacked are the
	// publishes sent but never acknowledged, for whatever reason (Sent - Acked; with every
	// publish waited for, the same as PublishErrors). Neither counts as Lost, which is about
	// what the hub acknowledged, but a run with either did not deliver what it was asked to:
	// it fails too.
	PublishErrors  int64   `json:"publish_errors"`
	Unacked        int64   `json:"unacked"`
	ThroughputPerS float64 `json:"throughput_per_s"`
	LatencyMS      Latency `json:"latency_ms"`
}

// Failures lists what makes the run a failure: lost, misrouted, failed or unacknowledged
// publishes; nil when there is none.
func (r LoadResult) Failures() []string {
	var out []string
	for _, f := range []struct {
		n    int64
		what string
	}{{r.Lost, "lost"}, {r.Misrouted, "misrouted"}, {r.PublishErrors, "publish errors"}, {r.Unacked, "unacknowledged"}} {
		if f.n > 0 {
			out = append(out, fmt.Sprintf("%d %s", f.n, f.what))
		}
	}
	return out
}

// gadgetStats is one gadget's sent and received samples, indexed by seq-1.
type gadgetStats struct {
	mu       sync.Mutex
	sentAt   []int64  // UnixNano just before the publish; 0 when not (yet) acknowledged
	received []uint32 // receipts at the paired phone
	phone    string   // the paired phone's device ID
}

type loadDevice struct {
	creds   apiclient.Credentials
	account string
	conn    *client.Client
	stats   *gadgetStats // gadgets only
	// runner is a phone's devices.PhoneModel at work on conn (devices/phonesim): it takes
	// the hub's commands (paired events, settings) as the phone app would. Phones only.
	runner *phonesim.Runner
}

// loadPhone collects its sync entries' latencies.
type loadPhone struct {
	*loadDevice
	mu        sync.Mutex
	latencies []float64 // ms
	highest   atomic.Int64
}

type loadRun struct {
	opts    LoadOptions
	log     *slog.Logger
	admin   *apiclient.Client
	phones  []*loadPhone
	gadgets []*loadDevice
	byID    map[string]*gadgetStats // read-only once the run publishes

	acked, sent, pubErrs, dups, misrouted, delivered atomic.Int64
	lastDelivery                                     atomic.Int64 // UnixNano
}

// RunLoad provisions accounts and devices through the admin fast path, connects every
// device, pairs gadgets with phones, publishes telemetry and measures it at the phones.
func RunLoad(ctx context.Context, opts LoadOptions) (LoadResult, error) {
	if opts.Accounts < 1 || opts.PhonesPerAccount < 1 || opts.BandsPerAccount+opts.ScalesPerAccount < 1 {
		return LoadResult{}, errors.New("load: need at least one account, one phone and one gadget per account")
	}
	if opts.Rate <= 0 || opts.Duration <= 0 {
		return LoadResult{}, errors.New("load: rate and duration must be positive")
	}
	if opts.QoS > 1 {
		return LoadResult{}, errors.New("load: qos is 0 or 1")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 200
	}
	if opts.Settle <= 0 {
		opts.Settle = 10 * time.Second
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 30 * time.Second
	}
	if opts.Progress == nil {
		opts.Progress = nopProgress{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &loadRun{opts: opts, log: opts.Logger, admin: opts.Target.API().WithToken(opts.Target.AdminToken), byID: map[string]*gadgetStats{}}
	defer r.closeAll()
	res := LoadResult{Accounts: opts.Accounts}
	if err := r.provision(ctx); err != nil {
		return res, err
	}
	res.Devices = len(r.phones) + len(r.gadgets)
	start := time.Now()
	if err := r.connectAll(ctx); err != nil {
		return res, err
	}
	res.ConnectMS = time.Since(start).Milliseconds()
	r.log.Info("connected", "devices", res.Devices, "ms", res.ConnectMS)
	if err := r.subscribeAndPair(ctx); err != nil {
		return res, err
	}
	pubStart := time.Now()
	ackCtx, stopAcks := context.WithCancel(ctx)
	var acks sync.WaitGroup
	r.startSyncAcks(ackCtx, &acks)
	r.publishAll(ctx)
	r.settle(ctx)
	stopAcks()
	acks.Wait()
	return r.result(res, pubStart), nil
}

func (r *loadRun) closeAll() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.opts.Concurrency)
	closeOne := func(d *loadDevice) {
		if d.conn == nil {
			return
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if d.runner != nil {
				d.runner.Close()
			}
			d.conn.Close()
		})
	}
	for _, p := range r.phones {
		closeOne(p.loadDevice)
	}
	for _, g := range r.gadgets {
		closeOne(g)
	}
	wg.Wait()
}

// provision makes the accounts, devices and bindings through the admin fast path, in
// batches that fit the API's 64 KiB request bodies.
func (r *loadRun) provision(ctx context.Context) error {
	o := r.opts
	r.opts.Progress.Phase("provision", 0)
	defer r.opts.Progress.Done()
	// Batches go a few at a time: the hub's store commits them one after another anyway, but
	// the HTTP and JSON work of one overlaps the commits of another.
	const parallel = 4
	var mu sync.Mutex
	var counts []int
	for left := o.Accounts; left > 0; left -= min(left, 250) {
		counts = append(counts, min(left, 250))
	}
	batches := make([][]hub.LoadAccount, len(counts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, n := range counts {
		g.Go(func() error {
			var out struct {
				Accounts []hub.LoadAccount `json:"accounts"`
			}
			if err := r.admin.Do(gctx, http.MethodPost, "/api/v1/admin/accounts", map[string]int{"count": n}, &out); err != nil {
				return notImplemented(fmt.Errorf("admin accounts: %w", err))
			}
			batches[i] = out.Accounts
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var accounts []hub.LoadAccount
	for _, b := range batches {
		accounts = append(accounts, b...)
	}
	if len(accounts) != o.Accounts {
		return fmt.Errorf("admin accounts: got %d, want %d", len(accounts), o.Accounts)
	}
	provision := func(typ devices.Type, n int) ([]apiclient.Credentials, error) {
		var all []apiclient.Credentials
		for left := n; left > 0; {
			k := min(left, 5000)
			cs, err := r.opts.Target.API().Provision(ctx, string(typ), k)
			if err != nil {
				return nil, fmt.Errorf("provision %d %s: %w", k, typ, err)
			}
			all = append(all, cs...)
			left -= k
		}
		return all, nil
	}
	phones, err := provision(devices.Phone, o.Accounts*o.PhonesPerAccount)
	if err != nil {
		return err
	}
	var bands, scales []apiclient.Credentials
	if o.BandsPerAccount > 0 {
		if bands, err = provision(devices.Band, o.Accounts*o.BandsPerAccount); err != nil {
			return err
		}
	}
	if o.ScalesPerAccount > 0 {
		if scales, err = provision(devices.Scale, o.Accounts*o.ScalesPerAccount); err != nil {
			return err
		}
	}
	var bindings []hub.LoadBinding
	for i, a := range accounts {
		for j := range o.PhonesPerAccount {
			c := phones[i*o.PhonesPerAccount+j]
			r.phones = append(r.phones, &loadPhone{loadDevice: &loadDevice{creds: c, account: a.AccountID}})
			bindings = append(bindings, hub.LoadBinding{DeviceID: c.DeviceID, AccountID: a.AccountID})
		}
		first := len(r.phones) - o.PhonesPerAccount
		k := 0
		addGadget := func(c apiclient.Credentials) {
			p := r.phones[first+k%o.PhonesPerAccount]
			k++
			st := &gadgetStats{phone: p.creds.DeviceID}
			r.gadgets = append(r.gadgets, &loadDevice{creds: c, account: a.AccountID, stats: st})
			r.byID[c.DeviceID] = st
			bindings = append(bindings, hub.LoadBinding{DeviceID: c.DeviceID, AccountID: a.AccountID})
		}
		for j := range o.BandsPerAccount {
			addGadget(bands[i*o.BandsPerAccount+j])
		}
		for j := range o.ScalesPerAccount {
			addGadget(scales[i*o.ScalesPerAccount+j])
		}
	}
	secrets := make(map[string]string, len(bindings))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for chunk := range slices.Chunk(bindings, 500) {
		g.Go(func() error {
			var out struct {
				Bindings []hub.LoadBinding `json:"bindings"`
			}
			if err := r.admin.Do(gctx, http.MethodPost, "/api/v1/admin/bindings", map[string]any{"bindings": chunk}, &out); err != nil {
				return notImplemented(fmt.Errorf("admin bindings: %w", err))
			}
			mu.Lock()
			for _, b := range out.Bindings {
				secrets[b.DeviceID] = b.Secret
			}
			mu.Unlock()
			r.opts.Progress.Add(int64(len(chunk)))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, d := range r.devices() {
		d.creds.Secret = secrets[d.creds.DeviceID]
		if d.creds.Secret == "" {
			return fmt.Errorf("no binding secret for %s", d.creds.DeviceID)
		}
	}
	return nil
}

func (r *loadRun) devices() []*loadDevice {
	out := make([]*loadDevice, 0, len(r.phones)+len(r.gadgets))
	for _, p := range r.phones {
		out = append(out, p.loadDevice)
	}
	return append(out, r.gadgets...)
}

// each runs fn for every item with at most Concurrency at once and returns the first error.
func each[T any](ctx context.Context, r *loadRun, items []T, fn func(context.Context, T) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Concurrency)
	for _, it := range items {
		g.Go(func() error {
			if err := fn(gctx, it); err != nil {
				return err
			}
			r.opts.Progress.Add(1)
			return nil
		})
	}
	return g.Wait()
}

// connectAll connects every device at once (bounded concurrency): a reconnect storm.
func (r *loadRun) connectAll(ctx context.Context) error {
	ds := r.devices()
	r.opts.Progress.Phase("connect", int64(len(ds)))
	defer r.opts.Progress.Done()
	return each(ctx, r, ds, func(ctx context.Context, d *loadDevice) error {
		c, err := client.Connect(ctx, client.Options{Broker: r.opts.Target.MQTT, DeviceID: d.creds.DeviceID,
			Secret: d.creds.Secret, CleanSession: true, ConnectTimeout: 60 * time.Second, Logger: r.log})
		if err != nil {
			return fmt.Errorf("connect %s: %w", d.creds.DeviceID, err)
		}
		d.conn = c
		if d.stats == nil { // a phone
			d.runner = phonesim.Start(phonesim.Options{Client: c, Logger: r.log.With("device", d.creds.DeviceID)})
		}
		return nil
	})
}

// subscribeAndPair subscribes every phone to its account's sync stream and pairs every
// gadget with its phone.
func (r *loadRun) subscribeAndPair(ctx context.Context) error {
	r.opts.Progress.Phase("subscribe", int64(len(r.phones)))
	err := each(ctx, r, r.phones, func(ctx context.Context, p *loadPhone) error {
		return p.conn.Subscribe(ctx, devices.ControllerSyncTopic(p.creds.DeviceID), r.opts.QoS, func(_ string, payload []byte) { r.receive(p, payload) })
	})
	r.opts.Progress.Done()
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	phones := map[string]*loadPhone{}
	for _, p := range r.phones {
		phones[p.creds.DeviceID] = p
	}
	r.opts.Progress.Phase("pair", int64(len(r.gadgets)))
	defer r.opts.Progress.Done()
	return each(ctx, r, r.gadgets, func(ctx context.Context, g *loadDevice) error {
		p := phones[g.stats.phone]
		if _, err := p.conn.Request(ctx, devices.OpPair, devices.PairArgs{DeviceID: g.creds.DeviceID}); err != nil {
			return notImplemented(fmt.Errorf("pair %s with %s: %w", p.creds.DeviceID, g.creds.DeviceID, err))
		}
		return nil
	})
}

// receive records one sync entry at phone p. It runs on paho's goroutines: no blocking.
func (r *loadRun) receive(p *loadPhone, payload []byte) {
	now := time.Now().UnixNano()
	var e devices.SyncEntry
	if err := json.Unmarshal(payload, &e); err != nil {
		r.log.Warn("undecodable sync entry", "phone", p.creds.DeviceID, "error", err)
		return
	}
	for {
		h := p.highest.Load()
		if e.Cursor <= h || p.highest.CompareAndSwap(h, e.Cursor) {
			break
		}
	}
	st := r.byID[e.Device]
	if st == nil || st.phone != p.creds.DeviceID {
		r.misrouted.Add(1)
		return
	}
	st.mu.Lock()
	i := int(e.Seq) - 1
	if i < 0 || i >= len(st.received) {
		st.mu.Unlock()
		r.misrouted.Add(1)
		return
	}
	st.received[i]++
	first, sentAt := st.received[i] == 1, st.sentAt[i]
	st.mu.Unlock()
	if !first {
		r.dups.Add(1)
		return
	}
	r.delivered.Add(1)
	r.lastDelivery.Store(now)
	if sentAt > 0 {
		p.mu.Lock()
		p.latencies = append(p.latencies, float64(now-sentAt)/1e6)
		p.mu.Unlock()
	}
}

// startSyncAcks has every phone acknowledge what it received twice a second, as a real app
// would after storing it, so the hub can trim its backlog.
func (r *loadRun) startSyncAcks(ctx context.Context, wg *sync.WaitGroup) {
	var unsupported atomic.Bool
	for _, p := range r.phones {
		wg.Go(func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			var acked int64
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				h := p.highest.Load()
				if h <= acked || unsupported.Load() {
					continue
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := p.conn.Request(rctx, devices.OpSyncAck, devices.SyncAckArgs{Cursor: h})
				cancel()
				switch {
				case errors.Is(notImplemented(err), ErrNotImplemented):
					unsupported.Store(true)
				case err != nil:
					r.log.Debug("sync_ack", "phone", p.creds.DeviceID, "error", err)
				default:
					acked = h
				}
			}
		})
	}
}

// publishAll has every gadget publish at Rate for Duration, each on its own schedule
// (spread over the first interval so the hub does not see them in lockstep).
func (r *loadRun) publishAll(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / r.opts.Rate)
	per := int(math.Ceil(r.opts.Duration.Seconds() * r.opts.Rate))
	for _, g := range r.gadgets {
		g.stats.sentAt = make([]int64, per)
		g.stats.received = make([]uint32, per)
	}
	total := int64(per) * int64(len(r.gadgets))
	r.opts.Progress.Phase("publish", total)
	defer r.opts.Progress.Done()
	stopStatus := r.statusLoop(ctx)
	defer stopStatus()
	var wg sync.WaitGroup
	for i, g := range r.gadgets {
		offset := time.Duration(int64(interval) * int64(i) / int64(len(r.gadgets)))
		wg.Go(func() { r.publishGadget(ctx, g, per, interval, offset) })
	}
	wg.Wait()
}

func (r *loadRun) publishGadget(ctx context.Context, g *loadDevice, per int, interval, offset time.Duration) {
	stream, body := devices.StreamSteps, `"count":42`
	if g.creds.Type == string(devices.Scale) {
		stream, body = devices.StreamWeight, `"kg":72.5,"person":"p1"`
	}
	topic := devices.TelemetryTopic(g.creds.DeviceID, stream)
	next := time.Now().Add(offset)
	for seq := 1; seq <= per; seq++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		next = next.Add(interval)
		now := time.Now()
		payload := `{"seq":` + strconv.Itoa(seq) + `,"ts":"` + now.UTC().Format(time.RFC3339Nano) + `",` + body + `}`
		// Recorded before the publish: with QoS 1 the sample can reach the phone before the
		// PUBACK reaches us.
		g.stats.mu.Lock()
		g.stats.sentAt[seq-1] = now.UnixNano()
		g.stats.mu.Unlock()
		r.sent.Add(1)
		pctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
		err := g.conn.Publish(pctx, topic, r.opts.QoS, false, []byte(payload))
		cancel()
		if err != nil {
			r.pubErrs.Add(1)
			r.log.Debug("publish", "device", g.creds.DeviceID, "seq", seq, "error", err)
			g.stats.mu.Lock()
			g.stats.sentAt[seq-1] = -now.UnixNano() // not acknowledged: not counted lost
			g.stats.mu.Unlock()
		} else {
			r.acked.Add(1)
		}
		r.opts.Progress.Add(1)
	}
}

// statusLoop shows the counters once a second until stopped.
func (r *loadRun) statusLoop(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.opts.Progress.Status(fmt.Sprintf("sent %d acked %d delivered %d duplicates %d errors %d",
					r.sent.Load(), r.acked.Load(), r.delivered.Load(), r.dups.Load(), r.pubErrs.Load()))
			}
		}
	}()
	return func() { cancel(); <-done }
}

// settle waits until every acknowledged sample arrived, or delivery made no progress for
// Settle. (Counting delivered against acked is not enough: samples whose PUBACK timed out may
// arrive too, so the check is per sample.)
func (r *loadRun) settle(ctx context.Context) {
	r.opts.Progress.Phase("settle", 0)
	defer r.opts.Progress.Done()
	last, lastChange := r.delivered.Load(), time.Now()
	for r.missing() > 0 && time.Since(lastChange) < r.opts.Settle {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if d := r.delivered.Load(); d != last {
			r.opts.Progress.Add(d - last)
			last, lastChange = d, time.Now()
		}
	}
}

// missing counts acknowledged samples not received (yet).
func (r *loadRun) missing() int64 {
	var n int64
	for _, g := range r.gadgets {
		g.stats.mu.Lock()
		for i, at := range g.stats.sentAt {
			if at > 0 && g.stats.received[i] == 0 {
				n++
			}
		}
		g.stats.mu.Unlock()
	}
	return n
}

func (r *loadRun) result(res LoadResult, pubStart time.Time) LoadResult {
	res.Sent, res.Acked, res.Delivered = r.sent.Load(), r.acked.Load(), r.delivered.Load()
	res.Duplicates, res.Misrouted, res.PublishErrors = r.dups.Load(), r.misrouted.Load(), r.pubErrs.Load()
	res.Unacked = res.Sent - res.Acked
	res.Lost = r.missing()
	if last := r.lastDelivery.Load(); last > 0 {
		if secs := time.Unix(0, last).Sub(pubStart).Seconds(); secs > 0 {
			res.ThroughputPerS = math.Round(float64(res.Delivered)/secs*10) / 10
		}
	}
	var all []float64
	for _, p := range r.phones {
		p.mu.Lock()
		all = append(all, p.latencies...)
		p.mu.Unlock()
	}
	res.LatencyMS = summarize(all)
	return res
}

// summarize returns nearest-rank percentiles, rounded to 0.01 ms.
func summarize(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	slices.Sort(ms)
	pct := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(ms)))) - 1
		return math.Round(ms[max(i, 0)]*100) / 100
	}
	return Latency{P50: pct(50), P95: pct(95), P99: pct(99), Max: math.Round(ms[len(ms)-1]*100) / 100}
}

type nopProgress struct{}

func (nopProgress) Phase(string, int64) {}
func (nopProgress) Add(int64)           {}
func (nopProgress) Status(string)       {}
func (nopProgress) Done()               {}
