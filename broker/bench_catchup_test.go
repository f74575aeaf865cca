package broker_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
)

// BenchmarkCatchUpMemory measures what a phone that was away costs the hub when it comes
// back: its bands sent a backlog while it was offline, it reconnects with a clean session and
// receives all of it. The relay reads the sync log a window (sync.window) at a time, so the
// heap it needs should not grow with the backlog; the benchmark reports the highest live
// heap (sampled after a collection every 5 ms) above its level before the phone connected,
// for a backlog and one ten times larger, and their ratio (near 1 when memory is bounded by
// configuration rather than by the backlog).
//
//	go test ./broker -run '^$' -bench CatchUpMemory -benchtime 1x
func BenchmarkCatchUpMemory(b *testing.B) {
	for range b.N {
		small := catchUp(b, 2_000)
		large := catchUp(b, 20_000)
		b.Logf("backlog 2,000: %s", small)
		b.Logf("backlog 20,000: %s", large)
		b.ReportMetric(small.peakMiB, "heap_MiB_2k")
		b.ReportMetric(large.peakMiB, "heap_MiB_20k")
		b.ReportMetric(large.peakMiB/max(small.peakMiB, 0.1), "heap_ratio_10x_backlog")
		b.ReportMetric(large.rate, "catchup_entries/s")
	}
}

type catchUpResult struct {
	backlog, received int
	peakMiB, rate     float64
}

func (r catchUpResult) String() string {
	return fmt.Sprintf("%d of %d received at %.0f/s, live heap at most %.1f MiB above the level before", r.received, r.backlog, r.rate, r.peakMiB)
}

func catchUp(b *testing.B, backlog int) catchUpResult {
	b.Helper()
	const bands = 4
	h, people, creds := benchHub(b, 1, bands)
	pubs := make([]benchClient, bands)
	for i, bd := range creds {
		pubs[i] = benchConnect(b, h.MQTTURL(), bd.DeviceID, bd.DeviceID, bd.Secret, "", nil)
	}
	// The phone has never connected: everything is backlog.
	res := drive(b, pubs, func(i int) string { return devices.TelemetryTopic(creds[i].DeviceID, devices.StreamSteps) }, backlog/bands, 0, nil)
	if res.acked != backlog {
		b.Fatalf("%d of %d samples acknowledged", res.acked, backlog)
	}
	for _, p := range pubs {
		p.close()
	}
	// The phone's bookkeeping is allocated before the baseline, so only the hub's (and the
	// MQTT clients') memory is measured.
	var mu sync.Mutex
	seen := make(map[int64]bool, backlog)
	var got atomic.Int64
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		// Live heap, after a collection, so garbage (which the GC lets grow in proportion
		// to the live heap, not to the backlog) does not blur the figure.
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}
	}()
	start := time.Now()
	p := people[0]
	phone := benchConnect(b, h.MQTTURL(), p.id.DeviceID, p.id.DeviceID, p.secret, devices.ControllerSyncTopic(p.id.DeviceID), func(_ string, payload []byte) {
		var e devices.SyncEntry
		if json.Unmarshal(payload, &e) == nil && e.Gap == nil {
			mu.Lock()
			if !seen[e.Cursor] {
				seen[e.Cursor] = true
				got.Add(1)
			}
			mu.Unlock()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for int(got.Load()) < backlog && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	phone.close()
	r := catchUpResult{backlog: backlog, received: int(got.Load()), rate: float64(got.Load()) / elapsed.Seconds()}
	if pk := peak.Load(); pk > base {
		r.peakMiB = float64(pk-base) / (1 << 20)
	}
	if r.received != backlog {
		b.Fatalf("catch-up: %s", r)
	}
	return r
}
