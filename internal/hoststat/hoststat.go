// Package hoststat reads what the machine's CPUs did, for benchmarks that report their
// figures next to the conditions they were measured in: the CPU time of this process, and
// the share of the machine's CPU time the hypervisor gave to other guests (steal), which
// on a shared virtual machine makes latency swing from one run to the next.
package hoststat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
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
