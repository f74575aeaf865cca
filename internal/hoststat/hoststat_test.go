package hoststat

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestParseCPUTimes(t *testing.T) {
	stat := []byte("cpu  100 5 50 800 20 3 2 20 0 0\ncpu0 50 2 25 400 10 1 1 10 0 0\nintr 1 2 3\n")
	got, err := parseCPUTimes(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := (CPUTimes{Total: 1000, Steal: 20}); got != want {
		t.Fatalf("parsed %+v, want %+v", got, want)
	}
	later := CPUTimes{Total: 1200, Steal: 70}
	if p := StealPercent(got, later); math.Abs(p-25) > 1e-9 {
		t.Fatalf("steal %.2f %%, want 25 %%", p)
	}
	if p := StealPercent(later, later); p != 0 {
		t.Fatalf("steal over no time: %.2f %%, want 0", p)
	}
}

func TestParseCPUTimesRefusesGarbage(t *testing.T) {
	if _, err := parseCPUTimes([]byte("cpu 1 x 3\n")); err == nil {
		t.Fatal("a non-numeric field was accepted")
	}
	if _, err := parseCPUTimes([]byte("intr 1 2\n")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no cpu line: %v, want ErrUnavailable", err)
	}
}

func TestReadCPUTimesOnThisMachine(t *testing.T) {
	a, err := ReadCPUTimes()
	if errors.Is(err, ErrUnavailable) {
		t.Skip("needs Linux's /proc/stat:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if a.Total == 0 || a.Steal > a.Total {
		t.Fatalf("implausible CPU times %+v", a)
	}
	if ProcessCPU() <= 0 {
		t.Fatal("this process has used no CPU time")
	}
}

// TestSchedQuantileOfTheDifference: the quantile covers only what was counted between the
// two snapshots, and lands in the bucket that holds it.
func TestSchedQuantileOfTheDifference(t *testing.T) {
	// Bucket i holds latencies in [buckets[i], buckets[i+1]).
	buckets := []float64{0, 1e-6, 1e-4, 1e-3, 1e-2, math.Inf(1)}
	a := SchedLatencies{counts: []uint64{0, 1000, 0, 0, 0}, buckets: buckets}
	b := SchedLatencies{counts: []uint64{0, 1010, 60, 30, 0}, buckets: buckets}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.05, 100 * time.Microsecond}, {0.5, time.Millisecond}, {0.9, 10 * time.Millisecond}} {
		got, n := b.Quantile(a, c.q)
		if got != c.want || n != 100 {
			t.Errorf("q%.2f: %v of %d, want %v of 100 (the 1,000 before the first snapshot do not count)", c.q, got, n, c.want)
		}
	}
	if q, n := a.Quantile(a, 0.5); q != 0 || n != 0 {
		t.Errorf("nothing between the snapshots: %v of %d, want 0 of 0", q, n)
	}
	// The last bucket is open-ended: its lower bound is the most that can be said.
	c := SchedLatencies{counts: []uint64{0, 1000, 0, 0, 10}, buckets: buckets}
	if q, _ := c.Quantile(a, 0.5); q != 10*time.Millisecond {
		t.Errorf("open last bucket: %v, want its lower bound 10ms", q)
	}
}

// TestReadSchedLatenciesCountsHandOffs: goroutines handing work to each other show up in
// the runtime's histogram on this Go version.
func TestReadSchedLatenciesCountsHandOffs(t *testing.T) {
	before := ReadSchedLatencies()
	if len(before.counts) == 0 {
		t.Skip("this Go runtime has no " + schedMetric + " histogram")
	}
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	for i := range 10000 {
		ping <- i
		<-pong
	}
	close(ping)
	after := ReadSchedLatencies()
	q, n := after.Quantile(before, 0.5)
	if n == 0 {
		t.Fatal("10,000 hand-offs between two goroutines, none counted")
	}
	if q90, _ := after.Quantile(before, 0.9); q90 < q {
		t.Fatalf("p90 %v below p50 %v", q90, q)
	}
}
