package hoststat

import (
	"errors"
	"math"
	"testing"
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
