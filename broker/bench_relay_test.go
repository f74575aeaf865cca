package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/broker"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/internal/hoststat"
)

// BenchmarkRelayVsBareMochi runs the same QoS 1 load (benchPublishers publishers, each
// with up to benchWindow publishes in flight, one subscriber) through bare mochi (allow-all) and
// through the hub (authenticated bands → ACL → schema → group commit → PUBACK → relay to the
// paired phone), in one run, and reports both and their ratio. Latency is publish → arrival
// at the subscriber, from the sample's ts.
//
//	go test ./broker -run '^$' -bench RelayVsBareMochi -benchtime 1x
func BenchmarkRelayVsBareMochi(b *testing.B) {
	// 2,000 each (100,000 in all): a few seconds of saturation, not a burst of half a second
	// whose figures swing with whatever else the machine does in it.
	const perPublisher = 2000
	for range b.N {
		compare(b, perPublisher, 0, 1)
	}
}

// BenchmarkRelayVsBareMochiPaced offers a fixed rate instead of as much as the broker
// takes: the publishers together send rate samples per second for about five seconds (each
// still with at most benchWindow in flight, so a broker that cannot keep up slows them
// down), and latency is measured at that rate rather than in a queue of saturation.
//
//	go test ./broker -run '^$' -bench RelayVsBareMochiPaced -benchtime 1x
//
// BENCH_STORE_SYNCHRONOUS=NORMAL runs the hub with store.synchronous=NORMAL (no fsync per
// commit; survives a process crash, not a power loss).
func BenchmarkRelayVsBareMochiPaced(b *testing.B) {
	for _, c := range []struct{ rate, subscribers int }{{5000, 1}, {10000, 1}, {15000, 10}, {20000, 1}, {20000, 10}} {
		b.Run(fmt.Sprintf("rate=%d/subscribers=%d", c.rate, c.subscribers), func(b *testing.B) {
			for range b.N {
				compare(b, c.rate*5/benchPublishers, float64(c.rate), c.subscribers)
			}
		})
	}
}

// compare runs the same load through bare mochi and the hub and reports both. With more
// than one subscriber, publisher i's messages go to subscriber i % subscribers (for the hub:
// band i is paired with phone i % subscribers), as when many people's bands each reach
// their own phone rather than all of them one phone.
//
// Each half runs under a pprof label (half=bare, half=hub) that every goroutine it starts
// inherits, so a CPU profile of the benchmark (-cpuprofile) splits by half with
// `go tool pprof -tagfocus half=hub`.
func compare(b *testing.B, perPublisher int, rate float64, subscribers int) {
	var bare, hubRes loadResult
	pprof.Do(context.Background(), pprof.Labels("half", "bare"), func(context.Context) {
		bare = runBare(b, perPublisher, rate, subscribers)
	})
	pprof.Do(context.Background(), pprof.Labels("half", "hub"), func(context.Context) {
		hubRes = runHub(b, perPublisher, rate, subscribers)
	})
	b.Logf("bare mochi: %s", bare)
	b.Logf("hub:        %s", hubRes)
	b.ReportMetric(bare.rate, "bare_msgs/s")
	b.ReportMetric(hubRes.rate, "hub_msgs/s")
	b.ReportMetric(hubRes.rate/bare.rate, "throughput_ratio")
	b.ReportMetric(bare.ackRate, "bare_acked/s")
	b.ReportMetric(hubRes.ackRate, "hub_acked/s")
	b.ReportMetric(hubRes.ackRate/bare.ackRate, "ingest_ratio")
	b.ReportMetric(bare.p50, "bare_p50_ms")
	b.ReportMetric(hubRes.p50, "hub_p50_ms")
	b.ReportMetric(bare.p99, "bare_p99_ms")
	b.ReportMetric(hubRes.p99, "hub_p99_ms")
	b.ReportMetric(hubRes.p99/bare.p99, "p99_ratio")
	b.ReportMetric(bare.cores, "bare_cores")
	b.ReportMetric(hubRes.cores, "hub_cores")
	b.ReportMetric(bare.allocPerMsg, "bare_alloc_B/msg")
	b.ReportMetric(hubRes.allocPerMsg, "hub_alloc_B/msg")
	b.ReportMetric(bare.schedP50, "bare_sched_p50_ms")
	b.ReportMetric(hubRes.schedP50, "hub_sched_p50_ms")
	b.ReportMetric(bare.ackP50, "bare_puback_p50_ms")
	b.ReportMetric(hubRes.ackP50, "hub_puback_p50_ms")
	if hubRes.flushP99 > 0 {
		b.ReportMetric(hubRes.flushP50, "disk_flush_p50_ms")
		b.ReportMetric(hubRes.flushP99, "disk_flush_p99_ms")
	}
	if f := hubRes.walFlushes; f.n > 0 {
		b.ReportMetric(float64(f.over10ms), "hub_flushes_over_10ms")
		b.ReportMetric(float64(f.over25ms), "hub_flushes_over_25ms")
	}
	if c := hubRes.writerHeld; c.n > 0 {
		b.ReportMetric(c.meanMS(), "hub_ckpt_writer_ms")
	}
	if hubRes.rowsPerCommit > 0 {
		b.ReportMetric(hubRes.rowsPerCommit, "hub_rows/commit")
		b.ReportMetric(hubRes.commitMS, "hub_commit_ms")
	}
	if bare.steal >= 0 && hubRes.steal >= 0 {
		b.ReportMetric(bare.steal, "bare_steal_%")
		b.ReportMetric(hubRes.steal, "hub_steal_%")
	}
	b.ReportMetric(float64(bare.lost), "bare_lost")
	b.ReportMetric(float64(hubRes.lost), "hub_lost")
}

const benchPublishers = 50

// benchWindow is how many QoS 1 publishes each publisher keeps in flight. 1 makes the load
// latency-bound (each message waits for the previous PUBACK), which hides what group commit
// does; real bands flushing a backlog keep several in flight.
const benchWindow = 16

type loadResult struct {
	acked, received, lost int
	strays                int // messages that named no sample of the load
	rate, p50, p99        float64
	ackRate               float64 // publishes acknowledged per second (ingest, before delivery)
	ackP50, ackP99        float64 // publish → PUBACK, ms
	// cores is the CPU this process used, in cores: the broker and the load clients, or the
	// broker alone with BENCH_LOAD=process (bench_load_test.go), which reports the clients'
	// process as clientCores.
	cores, clientCores float64
	// schedP50 and schedP90 are how long goroutines of the process waited, ready, for a CPU
	// (ms, the runtime's histogram: upper bucket bounds). Each hand-off from one goroutine to
	// the next on a message's path costs about this much.
	schedP50, schedP90 float64
	flushP50, flushP99 float64 // the disk's own flush just before the run (hub only), ms
	rowsPerCommit      float64 // acknowledged samples per sync log transaction (hub only)
	commitMS           float64 // mean time of one such transaction with its flush, ms (hub only)
	// walFlushes are the hub's flushes of its WAL during the run: every PUBACK waits for
	// one, so a flush that stalls holds back every acknowledgement of that time. On our
	// virtual disk about one flush in a thousand takes 20-60 ms (a probe of 64 KiB writes,
	// 2026-12-04), and one stall of 50 ms at 20,000/s delays 1,000 acknowledgements, as
	// many as a five-second run's slowest 1 % (hub only, store.synchronous=FULL).
	walFlushes storeOp
	// writerHeld are the checkpointer's second steps during the run, each of which holds
	// the store's writer (hub only).
	writerHeld storeOp
	// allocPerMsg is what this process allocated per acknowledged message (bytes) and gcs
	// how many garbage collections it ran meanwhile: the broker alone with
	// BENCH_LOAD=process, the broker and the load clients otherwise.
	allocPerMsg float64
	gcs         int
	// steal is the share of the machine's CPU time the hypervisor gave to other guests
	// during the run, in percent (-1 where the system cannot say): on a shared virtual
	// machine it is what makes one run's latency twice another's.
	steal float64
}

func (r loadResult) String() string {
	s := fmt.Sprintf("%d acked (%.0f acked/s, PUBACK p50 %.2f ms, p99 %.2f ms), %d delivered, %d lost, %.0f delivered/s, p50 %.2f ms, p99 %.2f ms, %.2f cores (a ready goroutine waited p50 %.3f ms, p90 %.3f ms)", r.acked, r.ackRate, r.ackP50, r.ackP99, r.received, r.lost, r.rate, r.p50, r.p99, r.cores, r.schedP50, r.schedP90)
	if r.strays > 0 {
		s += fmt.Sprintf(", %d messages that named no sample", r.strays)
	}
	if r.clientCores > 0 {
		s += fmt.Sprintf(", the load clients %.2f cores", r.clientCores)
	}
	s += fmt.Sprintf(", %.0f bytes allocated per message, %d GCs", r.allocPerMsg, r.gcs)
	if r.steal >= 0 {
		s += fmt.Sprintf(", %.0f %% of the host's CPU stolen", r.steal)
	}
	if r.rowsPerCommit > 0 {
		s += fmt.Sprintf(", %.1f samples per commit (%.2f ms each with its flush)", r.rowsPerCommit, r.commitMS)
	}
	if f := r.walFlushes; f.n > 0 {
		s += fmt.Sprintf(", %d WAL flushes (%.2f ms on average, %d over 10 ms, %d over 25 ms)", f.n, f.meanMS(), f.over10ms, f.over25ms)
	}
	if c := r.writerHeld; c.n > 0 {
		s += fmt.Sprintf(", the checkpointer held the writer %d times (%.2f ms on average)", c.n, c.meanMS())
	}
	if r.flushP99 > 0 {
		s += fmt.Sprintf("; the disk's flush before it: p50 %.2f ms, p99 %.2f ms", r.flushP50, r.flushP99)
	}
	return s
}

// collector is the subscribers' side: which samples arrived, and their latencies.
//
// Its memory is allocated before the run and is the same for both brokers: a flag and a
// latency per sample the load will send. The load clients share the garbage collector with
// the broker under test, and deliveries pause while a collection marks (hub and bare alike:
// arrival times logged against GODEBUG=gctrace=1 showed a gap of 5-25 ms at nearly every
// collection). Keyed by strings in a map, the collector was about half the live heap in
// the hub's half (11 of 24 MB 2.5 s into a run at 20,000/s, as the hub names a sample by
// its band's long device ID) against a quarter in bare mochi's (3 of 13 MB), so the
// benchmark's own bookkeeping lengthened the hub's pauses more than bare mochi's.
type collector struct {
	index map[string]int // a publisher's name (sampleOf) → its number
	per   int            // samples per publisher, seq 1..per
	mu    sync.Mutex
	seen  []bool // publisher*per + seq-1
	lat   []float64
	// strays counts messages that name no sample of the load; they are not counted as
	// received.
	strays int
	last   atomic.Int64
}

// newCollector expects perPublisher samples (seq 1..perPublisher) from each of the
// publishers named in names.
func newCollector(names []string, perPublisher int) *collector {
	c := &collector{index: make(map[string]int, len(names)), per: perPublisher,
		seen: make([]bool, len(names)*perPublisher), lat: make([]float64, 0, len(names)*perPublisher)}
	for i, n := range names {
		c.index[n] = i
	}
	return c
}

func (c *collector) add(name string, seq uint64, ts time.Time) {
	now := time.Now()
	i, ok := c.index[name]
	c.mu.Lock()
	switch {
	case !ok || seq < 1 || seq > uint64(c.per):
		c.strays++
	case !c.seen[i*c.per+int(seq)-1]:
		c.seen[i*c.per+int(seq)-1] = true
		c.lat = append(c.lat, float64(now.Sub(ts).Microseconds())/1000)
	}
	c.mu.Unlock()
	c.last.Store(now.UnixNano())
}

// count is how many distinct samples arrived.
func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lat)
}

// clientRun is what the load clients saw of one run: it crosses from the load-client
// process to the benchmark as JSON.
type clientRun struct {
	Acked, Received int
	Strays          int     // messages the subscribers got that named no sample of the load
	AckRate, Rate   float64 // acknowledged and delivered per second
	P50, P99        float64 // publish → arrival at the subscriber, ms
	AckP50, AckP99  float64 // publish → PUBACK, ms
	Busy            float64 // seconds, until the last acknowledgement or arrival
	CPU             float64 // seconds of CPU the load-client process used (0 in-process)
}

// drive runs the load with the clients in this process and measures the process, clients
// included.
func drive(b *testing.B, pubs []benchClient, topic func(i int) string, perPublisher int, rate float64, c *collector) loadResult {
	b.Helper()
	return measured(func() clientRun { return driveClients(b, pubs, topic, perPublisher, rate, c) })
}

// measured runs the load and reports it with what this process used meanwhile: CPU over
// the busy part of the run, how long its goroutines waited for a CPU, and the host's steal.
func measured(run func() clientRun) loadResult {
	cpu0 := hoststat.ProcessCPU()
	sched0 := hoststat.ReadSchedLatencies()
	host0, hostErr := hoststat.ReadCPUTimes()
	var mem0, mem1 runtime.MemStats
	runtime.ReadMemStats(&mem0)
	cr := run()
	runtime.ReadMemStats(&mem1)
	sched := hoststat.ReadSchedLatencies()
	schedP50, _ := sched.Quantile(sched0, 0.5)
	schedP90, _ := sched.Quantile(sched0, 0.9)
	steal := -1.0
	if host1, err := hoststat.ReadCPUTimes(); err == nil && hostErr == nil {
		steal = hoststat.StealPercent(host0, host1)
	}
	r := loadResult{acked: cr.Acked, received: cr.Received, lost: cr.Acked - cr.Received, strays: cr.Strays, rate: cr.Rate, p50: cr.P50, p99: cr.P99,
		ackRate: cr.AckRate, ackP50: cr.AckP50, ackP99: cr.AckP99, steal: steal,
		schedP50: float64(schedP50.Microseconds()) / 1000, schedP90: float64(schedP90.Microseconds()) / 1000}
	if cr.Acked > 0 {
		r.allocPerMsg = float64(mem1.TotalAlloc-mem0.TotalAlloc) / float64(cr.Acked)
		r.gcs = int(mem1.NumGC - mem0.NumGC)
	}
	if cr.Busy > 0 {
		r.cores = (hoststat.ProcessCPU() - cpu0).Seconds() / cr.Busy
		r.clientCores = cr.CPU / cr.Busy
	}
	return r
}

// driveClients publishes perPublisher samples from each publisher, together at rate
// samples per second (0: as fast as the window allows), and waits (bounded) for the
// subscriber to go quiet. With no collector (c nil: nobody subscribes) it returns once
// every publish is answered.
func driveClients(tb testing.TB, pubs []benchClient, topic func(i int) string, perPublisher int, rate float64, c *collector) clientRun {
	tb.Helper()
	var acked atomic.Int64
	var ackMu sync.Mutex
	ackLat := make([]float64, 0, len(pubs)*perPublisher)
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Up to benchWindow publishes in flight per publisher, as a band flushing its
			// backlog has: the same for both brokers.
			window := make(chan struct{}, benchWindow)
			var inflight sync.WaitGroup
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(len(pubs)) / rate * float64(time.Second))
			}
			// Publishers start spread over one interval, not all at the same instant.
			due := start.Add(interval * time.Duration(i) / time.Duration(len(pubs)))
			for seq := 1; seq <= perPublisher; seq++ {
				if interval > 0 {
					time.Sleep(time.Until(due))
					due = due.Add(interval)
				}
				window <- struct{}{}
				pl := fmt.Sprintf(`{"seq":%d,"ts":%q,"count":%d}`, seq, time.Now().UTC().Format(time.RFC3339Nano), seq)
				inflight.Add(1)
				sent := time.Now()
				p.publish(topic(i), []byte(pl), func(ok bool) {
					if ok {
						acked.Add(1)
						ms := float64(time.Since(sent).Microseconds()) / 1000
						ackMu.Lock()
						ackLat = append(ackLat, ms)
						ackMu.Unlock()
					}
					<-window
					inflight.Done()
				})
			}
			inflight.Wait()
		}()
	}
	wg.Wait()
	ackElapsed := time.Since(start)
	want := int(acked.Load())
	r := clientRun{Acked: want, AckRate: float64(want) / ackElapsed.Seconds(), Busy: ackElapsed.Seconds()}
	if len(ackLat) > 0 {
		sort.Float64s(ackLat)
		r.AckP50, r.AckP99 = ackLat[len(ackLat)/2], ackLat[len(ackLat)*99/100]
	}
	if c == nil {
		return r
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.count() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Duration(c.last.Load() - start.UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	sort.Float64s(c.lat)
	// Over the busy part of the run: until the last ack or arrival, not the wait for losses.
	r.Received, r.Strays, r.Busy = len(c.lat), c.strays, max(ackElapsed, elapsed).Seconds()
	if len(c.lat) > 0 {
		r.P50, r.P99 = c.lat[len(c.lat)/2], c.lat[len(c.lat)*99/100]
		r.Rate = float64(len(c.lat)) / elapsed.Seconds()
	}
	return r
}

func pahoConnect(b testing.TB, url, id, user, pass string, onMsg paho.MessageHandler) paho.Client {
	b.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true).SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second).SetOrderMatters(false)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect %s: %v", id, tok.Error())
	}
	b.Cleanup(func() { c.Disconnect(0) })
	return c
}

// allowAll is mochi's allow-all auth, as in the reference figures.
type allowAll struct{ mqtt.HookBase }

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (*allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

func runBare(b *testing.B, perPublisher int, rate float64, subscribers int) loadResult {
	b.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	_ = srv.AddHook(new(allowAll), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		b.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = broker.CloseServer(srv) })
	spec := loadSpec{URL: "tcp://" + addr, Kind: loadBare, PerPublisher: perPublisher, Rate: rate}
	for j := range subscribers {
		spec.Subscribers = append(spec.Subscribers, loadConn{ID: fmt.Sprintf("sub%d", j), Topic: fmt.Sprintf("bench/g%d/#", j)})
	}
	for i := range benchPublishers {
		spec.Publishers = append(spec.Publishers, loadConn{ID: fmt.Sprintf("pub%d", i), Topic: fmt.Sprintf("bench/g%d/%d", i%subscribers, i)})
	}
	return runLoad(b, spec)
}

// benchPerson is an account with a phone (its controller) in a bench hub.
type benchPerson struct {
	account *apiclient.Client
	id      devices.Identity
	secret  string
}

// benchHub starts a hub with people accounts (one phone each) and bands bands, band i
// bound to person i % people and paired with that person's phone. It returns the bands'
// credentials with their binding secrets.
func benchHub(b *testing.B, people, bands int) (*apptest.Hub, []benchPerson, []apiclient.Credentials) {
	b.Helper()
	h := apptest.Start(b, func(c *config.Config) {
		// The durability choice (docs/security.md) is the biggest single factor in latency.
		if v := os.Getenv("BENCH_STORE_SYNCHRONOUS"); v != "" {
			c.Store.Synchronous = v
		}
		if v := os.Getenv("BENCH_SYNC_WINDOW"); v != "" {
			c.Sync.Window, _ = strconv.Atoi(v)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	ps := make([]benchPerson, people)
	for j := range ps {
		login, err := api.CreateAccount(ctx, fmt.Sprintf("bench%d@example.com", j), "bench-password-long")
		if err != nil {
			b.Fatal(err)
		}
		acc := api.WithToken(login.Token)
		phone, err := acc.RegisterDevice(ctx, "phone", "phone", "")
		if err != nil {
			b.Fatal(err)
		}
		ps[j] = benchPerson{account: acc, id: devices.Identity{DeviceID: phone.DeviceID, AccountID: login.AccountID, Type: devices.Phone}, secret: phone.Secret}
	}
	creds, err := api.Provision(ctx, "band", bands)
	if err != nil {
		b.Fatal(err)
	}
	for i, bd := range creds {
		owner := ps[i%people]
		f, err := client.Connect(ctx, client.Options{Broker: h.MQTTURL(), DeviceID: bd.DeviceID, Secret: bd.Secret, CleanSession: true})
		if err != nil {
			b.Fatal(err)
		}
		raw, err := f.Request(ctx, devices.OpBindCode, nil)
		if err != nil {
			b.Fatal(err)
		}
		var bc devices.BindCodeResult
		_ = json.Unmarshal(raw, &bc)
		if err := owner.account.Bind(ctx, bd.DeviceID, bc.Code); err != nil {
			b.Fatal(err)
		}
		for cmd := range f.Commands() {
			if cmd.Type == devices.CmdBound {
				var a devices.BoundArgs
				_ = json.Unmarshal(cmd.Args, &a)
				creds[i].Secret = a.Secret
				break
			}
		}
		f.Close()
		if err := h.Hub().Pair(ctx, owner.id, bd.DeviceID); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // factory sessions' clean-up
	return h, ps, creds
}

func runHub(b *testing.B, perPublisher int, rate float64, subscribers int) loadResult {
	b.Helper()
	h, people, bands := benchHub(b, subscribers, benchPublishers)
	spec := loadSpec{URL: h.MQTTURL(), Kind: loadHub, PerPublisher: perPublisher, Rate: rate}
	for _, p := range people {
		spec.Subscribers = append(spec.Subscribers, loadConn{ID: p.id.DeviceID, User: p.id.DeviceID, Pass: p.secret, Topic: devices.ControllerSyncTopic(p.id.DeviceID)})
	}
	for _, bd := range bands {
		spec.Publishers = append(spec.Publishers, loadConn{ID: bd.DeviceID, User: bd.DeviceID, Pass: bd.Secret, Topic: devices.TelemetryTopic(bd.DeviceID, devices.StreamSteps)})
	}
	var flushP50, flushP99 float64
	if !strings.EqualFold(h.Config.Store.Synchronous, "NORMAL") {
		flushP50, flushP99 = diskFlush(b, filepath.Dir(h.Config.Store.Path), 200)
	}
	// Each group commit is observed once as sync.append, with its flush; the flushes
	// themselves (one for every commit waiting when it starts) as wal.flush.
	const commits, flushes = "sync.append", "wal.flush"
	// The checkpointer's second step takes the writer between two commits
	// (store/sqlite/checkpoint.go): every sample that arrives meanwhile waits for it.
	const writerHeld = "checkpoint.writer"
	before := storeOps(b, h.URL(), commits, flushes, writerHeld)
	r := runLoad(b, spec)
	r.flushP50, r.flushP99 = flushP50, flushP99
	after := storeOps(b, h.URL(), commits, flushes, writerHeld)
	if c := after[commits].minus(before[commits]); c.n > 0 {
		r.rowsPerCommit = float64(r.acked) / float64(c.n)
		r.commitMS = c.meanMS()
	}
	r.walFlushes = after[flushes].minus(before[flushes])
	r.writerHeld = after[writerHeld].minus(before[writerHeld])
	return r
}

// storeOp is what the hub's /metrics says of one store operation
// (devicehub_store_operation_seconds{op=...}): how many ran, their seconds in all, and how
// many took longer than 10 ms and than 25 ms. All are 0 before the operation first runs.
type storeOp struct {
	n, over10ms, over25ms int
	seconds               float64
}

// meanMS is the mean time of one run of the operation, in ms (0 when none ran).
func (o storeOp) meanMS() float64 {
	if o.n == 0 {
		return 0
	}
	return o.seconds * 1000 / float64(o.n)
}

func (o storeOp) minus(p storeOp) storeOp {
	return storeOp{n: o.n - p.n, over10ms: o.over10ms - p.over10ms, over25ms: o.over25ms - p.over25ms, seconds: o.seconds - p.seconds}
}

// storeOps reads ops from the hub's /metrics.
func storeOps(b *testing.B, base string, ops ...string) map[string]storeOp {
	b.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	const name = "devicehub_store_operation_seconds"
	out := make(map[string]storeOp, len(ops))
	within := map[string][2]int{} // op → how many took at most 10 ms, 25 ms
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for _, op := range ops {
			series := func(suffix, labels string) (float64, bool) {
				v, ok := strings.CutPrefix(sc.Text(), name+suffix+`{op="`+op+`"`+labels+`} `)
				if !ok {
					return 0, false
				}
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("%s: %v", sc.Text(), err)
				}
				return f, true
			}
			o, w := out[op], within[op]
			if f, ok := series("_count", ""); ok {
				o.n = int(f)
			} else if f, ok := series("_sum", ""); ok {
				o.seconds = f
			} else if f, ok := series("_bucket", `,le="0.01"`); ok {
				w[0] = int(f)
			} else if f, ok := series("_bucket", `,le="0.025"`); ok {
				w[1] = int(f)
			}
			out[op], within[op] = o, w
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	for op, o := range out {
		o.over10ms, o.over25ms = o.n-within[op][0], o.n-within[op][1]
		out[op] = o
	}
	return out
}

// diskFlush measures what a flush costs on the store's disk just before the hub's run: n
// writes of 64 KiB (about a group commit's WAL frames), each synced. With
// store.synchronous=FULL every PUBACK waits for one (or for the end of one under way and then
// its own), which bare mochi never does, so this is the floor of the hub's latency that
// the broker cannot remove; on a virtual disk its p99 alone can exceed bare mochi's p99.
func diskFlush(b *testing.B, dir string, n int) (p50, p99 float64) {
	b.Helper()
	f, err := os.CreateTemp(dir, "flush-probe-*")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 64<<10)
	lat := make([]float64, 0, n)
	for i := range n {
		// Overwrites within 4 MiB, as the WAL is reused after a checkpoint.
		if _, err := f.WriteAt(buf, int64(i%64)*int64(len(buf))); err != nil {
			b.Fatal(err)
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, float64(time.Since(t).Microseconds())/1000)
	}
	sort.Float64s(lat)
	return lat[n/2], lat[n*99/100]
}
