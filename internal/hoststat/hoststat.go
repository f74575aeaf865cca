// Package hoststat reads what the machine's CPUs did, for benchmarks that report their
// figures next to the conditions they were measured in: the CPU time of this process, and
// the share of the machine's CPU time the hypervisor gave to other guests (steal), which
// on a shared virtual machine makes latency swing from one run to the next; and how long the
// Go scheduler kept ready goroutines waiting for a CPU.
package hoststat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// ProcessCPU is the CPU time this process has used, user and system (0 where the system
// cannot say).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPUTimes is the machine's CPU time so far, all CPUs together, in clock ticks.
type CPUTimes struct {
	Total, Steal uint64
}

// ErrUnavailable is returned where the system has no /proc/stat (not Linux).
var ErrUnavailable = errors.New("host CPU times unavailable")

// ReadCPUTimes reads the machine's CPU times from /proc/stat.
func ReadCPUTimes() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return parseCPUTimes(b)
}

// parseCPUTimes reads the "cpu" line: user nice system idle iowait irq softirq steal, then
// guest times that user and nice already include.
func parseCPUTimes(b []byte) (CPUTimes, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 || string(f[0]) != "cpu" {
			continue
		}
		var v [8]uint64
		for i := 0; i < len(v) && i+1 < len(f); i++ {
			n, err := strconv.ParseUint(string(f[i+1]), 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
			}
			v[i] = n
		}
		var t CPUTimes
		for _, n := range v {
			t.Total += n
		}
		t.Steal = v[7]
		return t, nil
	}
	return CPUTimes{}, fmt.Errorf("%w: no cpu line in /proc/stat", ErrUnavailable)
}

// StealPercent is the share of the machine's CPU time between a and b that the hypervisor
// took away (0 when nothing passed).
func StealPercent(a, b CPUTimes) float64 {
	if b.Total <= a.Total {
		return 0
	}
	return 100 * float64(b.Steal-a.Steal) / float64(b.Total-a.Total)
}

// schedMetric is the Go runtime's histogram of how long goroutines were ready to run before
// they ran: on a busy box, every hand-off from one goroutine to another waits about this long.
const schedMetric = "/sched/latencies:seconds"

// SchedLatencies is a snapshot of the runtime's scheduling-latency histogram.
type SchedLatencies struct {
	counts  []uint64
	buckets []float64
}

// ReadSchedLatencies takes a snapshot of the scheduling-latency histogram since the process
// started; Quantile of two snapshots' difference covers what happened between them.
func ReadSchedLatencies() SchedLatencies {
	s := []metrics.Sample{{Name: schedMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return SchedLatencies{}
	}
	h := s[0].Value.Float64Histogram()
	return SchedLatencies{counts: slices.Clone(h.Counts), buckets: h.Buckets}
}

// Quantile is the q-quantile (0 < q < 1) of the scheduling latencies between snapshot a
// and this later one (the upper bound of the bucket it falls in), and how many hand-offs
// were counted; 0, 0 where the runtime has no such histogram or nothing was counted.
func (b SchedLatencies) Quantile(a SchedLatencies, q float64) (time.Duration, uint64) {
	if len(b.counts) == 0 || len(a.counts) != len(b.counts) {
		return 0, 0
	}
	var total uint64
	for i := range b.counts {
		total += b.counts[i] - a.counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	want := uint64(q * float64(total))
	var seen uint64
	for i := range b.counts {
		seen += b.counts[i] - a.counts[i]
		if seen > want {
			upper := b.buckets[i+1]
			if math.IsInf(upper, 1) {
				upper = b.buckets[i]
			}
			return time.Duration(upper * float64(time.Second)), total
		}
	}
	return 0, total
}
