package web

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/hub"
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
		{T: from.Add(time.Hour), V: 100}, {T: from.Add(2 * time.Hour), V: 50}, // Jan 1
		{T: from.Add(48 * time.Hour), V: 300},  // Jan 3
		{T: from.Add(-48 * time.Hour), V: 999}, // before the period: ignored
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
	c := LineChart("Heart rate", "bpm", []Point{{T: from, V: 60}, {T: from.Add(12 * time.Hour), V: 90}, {T: to, V: 75}}, from, to)
	if c.Empty || len(c.Series) != 1 || c.Legend || c.Series[0].Name != "" {
		t.Fatalf("line chart = %+v", c)
	}
	s := c.Series[0]
	if len(s.Dots) != 3 || strings.Count(s.Line, ",") != 3 {
		t.Fatalf("line = %+v", s)
	}
	if s.Dots[0].X != c.Left || s.Dots[2].X != c.Right {
		t.Errorf("ends at x = %v and %v, want %v and %v", s.Dots[0].X, s.Dots[2].X, c.Left, c.Right)
	}
	if s.Dots[1].Y >= s.Dots[0].Y { // higher values are drawn higher up (smaller y)
		t.Errorf("90 bpm at y %v is not above 60 bpm at y %v", s.Dots[1].Y, s.Dots[0].Y)
	}
	if !strings.Contains(c.XTicks[0].Label, ":") {
		t.Errorf("a one-day chart labels hours: %q", c.XTicks[0].Label)
	}
	if e := LineChart("Weight", "kg", nil, from, to); !e.Empty {
		t.Error("no samples should be an empty chart")
	}
}

// TestWeightPerPerson: weights of several people on one scale are one line each, ordered by
// name, each with its own colour and legend entry, on one value axis; a lighter person's line
// is drawn below a heavier one's, and the lines never join samples of different people.
func TestWeightPerPerson(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(10 * 24 * time.Hour)
	day := func(d int) time.Time { return from.Add(time.Duration(d) * 24 * time.Hour) }
	pts := []Point{
		{T: day(1), V: 82, Group: "Boris"}, {T: day(2), V: 61, Group: "Anna"},
		{T: day(3), V: 81.5, Group: "Boris"}, {T: day(4), V: 60.5, Group: "Anna"}, {T: day(5), V: 60, Group: "Anna"},
	}
	groups := ByGroup(pts)
	if len(groups) != 2 || groups[0].Name != "Anna" || len(groups[0].Points) != 3 || groups[1].Name != "Boris" || len(groups[1].Points) != 2 {
		t.Fatalf("ByGroup = %+v", groups)
	}
	if !groups[0].Points[0].T.Equal(day(2)) || !groups[0].Points[2].T.Equal(day(5)) {
		t.Errorf("Anna's points out of order: %+v", groups[0].Points)
	}
	c := MultiLineChart("Weight", "kg", groups, from, to)
	if c.Empty || !c.Legend || len(c.Series) != 2 {
		t.Fatalf("chart = %+v", c)
	}
	anna, boris := c.Series[0], c.Series[1]
	if anna.Name != "Anna" || boris.Name != "Boris" || anna.Class == boris.Class || anna.Class == "" {
		t.Fatalf("series %q (%s) and %q (%s)", anna.Name, anna.Class, boris.Name, boris.Class)
	}
	if len(anna.Dots) != 3 || len(boris.Dots) != 2 || strings.Count(anna.Line, " ") != 2 || strings.Count(boris.Line, " ") != 1 {
		t.Fatalf("Anna %d dots %q, Boris %d dots %q", len(anna.Dots), anna.Line, len(boris.Dots), boris.Line)
	}
	for _, a := range anna.Dots {
		for _, b := range boris.Dots {
			if a.Y <= b.Y {
				t.Errorf("Anna's %s drawn at y %v, not below Boris's %s at y %v", a.Label, a.Y, b.Label, b.Y)
			}
		}
	}
	if !strings.HasPrefix(anna.Dots[0].Label, "Anna, ") || !strings.Contains(anna.Summary, "Anna: 3 samples, from 60 to 61 kg") {
		t.Errorf("Anna's labels: %q, %q", anna.Dots[0].Label, anna.Summary)
	}
	if !strings.Contains(c.Summary, "5 samples of 2 people (Anna, Boris)") {
		t.Errorf("summary %q", c.Summary)
	}
	// One person: still named, in the legend.
	one := MultiLineChart("Weight", "kg", ByGroup(pts[1:2]), from, to)
	if len(one.Series) != 1 || !one.Legend || one.Series[0].Name != "Anna" || !strings.Contains(one.Summary, "1 sample,") {
		t.Errorf("one person: %+v", one)
	}
}

// TestChoosePeriod: presets are rolling windows ending now; a custom period is whole UTC days
// from the first to the last date (today ends now); missing, malformed, reversed, future and
// too long ranges are refused, naming the field.
func TestChoosePeriod(t *testing.T) {
	now := time.Date(2026, 3, 10, 15, 30, 0, 0, time.UTC)
	q := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, c := range []struct {
		q        url.Values
		key      string
		from, to time.Time
	}{
		{q(), "7d", now.Add(-7 * 24 * time.Hour), now},
		{q("period", "30d"), "30d", now.Add(-30 * 24 * time.Hour), now},
		{q("period", "nonsense"), "7d", now.Add(-7 * 24 * time.Hour), now},
		// A preset chosen while the date inputs still hold dates: the preset wins.
		{q("period", "1d", "from", "2026-01-01", "to", "2026-01-02"), "1d", now.Add(-24 * time.Hour), now},
		{q("period", "custom", "from", "2026-01-01", "to", "2026-01-31"), "custom",
			time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC).Add(-time.Nanosecond)},
		// A link with dates and no period is custom; a last day of today ends now.
		{q("from", "2026-03-10", "to", "2026-03-10"), "custom", time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC), now},
		{q("period", "custom", "from", "2026-03-01", "to", "2026-04-30"), "custom", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), now},
		// 366 days, both counted.
		{q("period", "custom", "from", "2024-03-10", "to", "2025-03-10"), "custom",
			time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC), time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC).Add(-time.Nanosecond)},
	} {
		got, err := choosePeriod(c.q, now)
		if err != nil || got.Key != c.key || !got.From.Equal(c.from) || !got.To.Equal(c.to) {
			t.Errorf("choosePeriod(%v) = %+v, %v; want %s %v..%v", c.q, got, err, c.key, c.from, c.to)
		}
	}
	for _, c := range []struct {
		q     url.Values
		field string
		msg   string
	}{
		{q("period", "custom"), "from", "first day"},
		{q("period", "custom", "from", "2026-01-01"), "to", "last day"},
		{q("period", "custom", "from", "01/02/2026", "to", "2026-01-31"), "from", "not a date"},
		{q("period", "custom", "from", "2026-01-01", "to", "2026-02-30"), "to", "not a date"},
		{q("period", "custom", "from", "2026-02-01", "to", "2026-01-31"), "to", "before the first day"},
		{q("period", "custom", "from", "2026-03-11", "to", "2026-03-12"), "from", "in the future"},
		{q("period", "custom", "from", "2024-03-10", "to", "2025-03-11"), "to", "at most 366 days"},
		{q("from", "2000-01-01", "to", "2026-03-10"), "to", "at most 366 days"},
	} {
		_, err := choosePeriod(c.q, now)
		e := hub.AsError(err)
		if e == nil || e.Code != hub.EInvalid || e.Field != c.field || !strings.Contains(e.Message, c.msg) {
			t.Errorf("choosePeriod(%v): %v, want invalid %s %q", c.q, err, c.field, c.msg)
		}
	}
}
