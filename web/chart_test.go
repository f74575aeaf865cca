package web

import (
	"strings"
	"testing"
	"time"
)

func TestNiceScale(t *testing.T) {
	for _, c := range []struct {
		lo, hi         float64
		wantLo, wantHi float64
		wantStep       float64
	}{
		{0, 5500, 0, 6000, 2000},
		{60, 85, 60, 85, 5},
		{72.4, 72.4, 65, 80, 5}, // one value gets room around it
		{0, 0.7, 0, 0.8, 0.2},
	} {
		lo, hi, step := niceScale(c.lo, c.hi, 5)
		if lo != c.wantLo || hi != c.wantHi || step != c.wantStep {
			t.Errorf("niceScale(%v, %v) = %v, %v, %v; want %v, %v, %v", c.lo, c.hi, lo, hi, step, c.wantLo, c.wantHi, c.wantStep)
		}
	}
}

func TestDailySumsAndBars(t *testing.T) {
	from := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	to := from.Add(3 * 24 * time.Hour)
	pts := []Point{
		{from.Add(time.Hour), 100}, {from.Add(2 * time.Hour), 50}, // Jan 1
		{from.Add(48 * time.Hour), 300},  // Jan 3
		{from.Add(-48 * time.Hour), 999}, // before the period: ignored
	}
	labels, sums := DailySums(pts, from, to)
	if strings.Join(labels, ",") != "Jan 1,Jan 2,Jan 3,Jan 4" || len(sums) != 4 || sums[0] != 150 || sums[1] != 0 || sums[2] != 300 {
		t.Fatalf("DailySums = %v %v", labels, sums)
	}
	c := BarChart("Steps per day", "steps", labels, sums)
	if c.Empty || len(c.Bars) != 4 || c.Bars[1].H != 0 || c.Bars[2].H <= c.Bars[0].H {
		t.Fatalf("bars = %+v", c.Bars)
	}
	for _, b := range c.Bars {
		if b.X < c.Left || b.X+b.W > c.Right || b.Y < c.Top || b.Y+b.H > c.Bottom+0.1 {
			t.Errorf("bar %+v outside the plot", b)
		}
	}
	if !strings.Contains(c.Summary, "450 steps") {
		t.Errorf("summary %q", c.Summary)
	}
	if e := BarChart("Steps per day", "steps", labels, make([]float64, 4)); !e.Empty {
		t.Error("all-zero steps should be an empty chart")
	}
}

func TestLineChart(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	c := LineChart("Heart rate", "bpm", []Point{{from, 60}, {from.Add(12 * time.Hour), 90}, {to, 75}}, from, to)
	if c.Empty || len(c.Dots) != 3 || strings.Count(c.Line, ",") != 3 {
		t.Fatalf("line chart = %+v", c)
	}
	if c.Dots[0].X != c.Left || c.Dots[2].X != c.Right {
		t.Errorf("ends at x = %v and %v, want %v and %v", c.Dots[0].X, c.Dots[2].X, c.Left, c.Right)
	}
	if c.Dots[1].Y >= c.Dots[0].Y { // higher values are drawn higher up (smaller y)
		t.Errorf("90 bpm at y %v is not above 60 bpm at y %v", c.Dots[1].Y, c.Dots[0].Y)
	}
	if !strings.Contains(c.XTicks[0].Label, ":") {
		t.Errorf("a one-day chart labels hours: %q", c.XTicks[0].Label)
	}
	if e := LineChart("Weight", "kg", nil, from, to); !e.Empty {
		t.Error("no samples should be an empty chart")
	}
}
