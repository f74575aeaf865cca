package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/internal/hoststat"
)

// BenchmarkAppendSync measures the sync log's durable ingest: batch samples of 50 bands in 10
// accounts are queued together and committed by the group committer, as the broker does when
// that many are waiting. It reports rows per second and the CPU (of the whole process, Go and
// SQLite) per row, the figure ../shared/figures.md puts at about 18 µs for SQLite alone.
//
//	go test ./store/sqlite -run '^$' -bench AppendSync
func BenchmarkAppendSync(b *testing.B) {
	for _, batch := range []int{1, 32, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			db, err := Open(context.Background(), filepath.Join(b.TempDir(), "hub.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := db.SyncLog(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			data := json.RawMessage(`{"count":1234}`)
			now := time.Now()
			seq := make([]uint64, 50)
			waits := make([]func(context.Context) (bool, error), batch)
			cpu0 := hoststat.ProcessCPU()
			host0, hostErr := hoststat.ReadCPUTimes()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				for k := range n {
					d := (i + k) % len(seq)
					seq[d]++
					r := hub.SyncRecord{AccountID: fmt.Sprintf("acc-%02d-0123456789abcdef", d%10), DeviceID: fmt.Sprintf("dev-%02d-0123456789abcdef", d),
						Stream: "steps", Seq: seq[d], TS: now, Data: data, CreatedAt: now}
					if waits[k], err = s.AppendSyncAsync(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
				for _, w := range waits[:n] {
					if ok, err := w(ctx); err != nil || !ok {
						b.Fatalf("append: %v, stored %v", err, ok)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64((hoststat.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu_µs/row")
			// What the hypervisor took meanwhile: rows/s on a shared virtual machine swings with it.
			if host1, err := hoststat.ReadCPUTimes(); err == nil && hostErr == nil {
				b.ReportMetric(hoststat.StealPercent(host0, host1), "steal_%")
			}
		})
	}
}
