package sqlite

import (
	"context"
	"database/sql"
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

// BenchmarkSeenStart measures what a start costs when the duplicate check must be read from
// the log: after a crash, the few rounds since the last save; after the upgrade to 00011,
// the whole log. Each op is one start (SyncLog) over a log of 200,000 samples of 20,000
// streams none of which is saved, including the save of all of them that follows; "saved" is
// the same start with all of it saved, the baseline.
//
//	go test ./store/sqlite -run '^$' -bench SeenStart -benchtime 3x
func BenchmarkSeenStart(b *testing.B) {
	const rows, streams = 200_000, 20_000
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "hub.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	fill := func() {
		err := db.tx(ctx, "bench.fill", func(tx *sql.Tx) error {
			for _, q := range []string{`DELETE FROM sync_seen`, `DELETE FROM sync_seen_mark`, `DELETE FROM sync_log`} {
				if _, err := tx.Exec(q); err != nil {
					return err
				}
			}
			st, err := tx.Prepare(`INSERT INTO sync_log(account_id, device_id, binding, stream, seq, ts, wide, data, created_at)
				VALUES(?, ?, 1, 'steps', ?, 1, 0, X'7B7D', 1)`)
			if err != nil {
				return err
			}
			defer st.Close()
			for i := range rows {
				d := i % streams
				if _, err := st.Exec(fmt.Sprintf("acc-%05d", d/4), fmt.Sprintf("dev-%05d-0123456789abcdef", d), 1+i/streams); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	start := func(b *testing.B) {
		s, err := db.SyncLog(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close() // saves nothing more: the start saved what it read
		b.StartTimer()
	}
	// The baseline: the same log, all of it saved (a start after a clean stop).
	b.Run("saved", func(b *testing.B) {
		fill()
		s, err := db.SyncLog(ctx)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		b.ResetTimer()
		for range b.N {
			start(b)
		}
	})
	b.Run("unsaved", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			fill()
			b.StartTimer()
			start(b)
		}
		b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "log_rows/s")
	})
}
