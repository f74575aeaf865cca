package web

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Charts are drawn in Go as plain SVG geometry that a template writes out: no script, no
// external library, nothing the CSP has to allow. Colours come from classes in app.css.

const (
	chartW, chartH             = 640.0, 240.0
	padLeft, padRight          = 52.0, 40.0
	padTop, padBottom          = 12.0, 30.0
	plotW, plotH               = chartW - padLeft - padRight, chartH - padTop - padBottom
	plotBottom, plotRight      = padTop + plotH, padLeft + plotW
	maxXTicks                  = 6
	yTickCount                 = 5
	dayFormat, dayHourFormat   = "Jan 2", "Jan 2 15:04"
	shortRangeForHourFormatted = 72 * time.Hour
)

// Chart is one chart's drawing, ready for the chart template.
type Chart struct {
	Title, Unit string
	Class       string // extra class for the line and dots of a one-line chart (colour)
	W, H        float64
	Left, Right float64 // plot area edges
	Top, Bottom float64
	Bars        []Bar
	Series      []Series // the lines of a line chart, in legend order
	Legend      bool     // the series have names to list under the chart
	YTicks      []Tick
	XTicks      []Tick
	Empty       bool   // no samples in the period
	Summary     string // a text summary for screen readers and the page
}

// Series is one line of a line chart: a person's weights, say.
type Series struct {
	Name    string // the legend's label ("" for the one line of an unnamed chart)
	Class   string // colour class of the line, its dots and its legend swatch
	Line    string // polyline points, "x,y x,y …"
	Dots    []Dot
	Summary string // "Anna: 3 samples, from 61 to 62.5 kg."
}

// NamedPoints is the data of one series.
type NamedPoints struct {
	Name   string
	Points []Point
}

// seriesClasses colour the lines of a chart with several (app.css has one rule each); more
// series than colours reuse them, the legend still tells them apart by name.
var seriesClasses = [...]string{"s0", "s1", "s2", "s3", "s4", "s5"}

// maxDots is how many samples a line chart marks with dots; denser charts show the lines only.
const maxDots = 200

// Bar is one bar of a bar chart.
type Bar struct {
	X, Y, W, H float64
	Label      string // the hover title
}

// Dot is one sample of a line chart.
type Dot struct {
	X, Y  float64
	Label string
}

// Tick is an axis label at a position (y for the value axis, x for the time axis).
type Tick struct {
	Pos   float64
	Label string
}

// Point is one timed value. Group names the series it belongs to in a chart that has several
// (the person weighed); "" for streams of one series.
type Point struct {
	T     time.Time
	V     float64
	Group string
}

// ByGroup splits points into one series per Group, ordered by name; each keeps the points'
// order.
func ByGroup(pts []Point) []NamedPoints {
	index := map[string]int{}
	var out []NamedPoints
	for _, p := range pts {
		i, ok := index[p.Group]
		if !ok {
			i = len(out)
			index[p.Group] = i
			out = append(out, NamedPoints{Name: p.Group})
		}
		out[i].Points = append(out[i].Points, p)
	}
	slices.SortStableFunc(out, func(a, b NamedPoints) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func newChart(title, unit string) Chart {
	return Chart{Title: title, Unit: unit, W: chartW, H: chartH, Left: padLeft, Right: plotRight, Top: padTop, Bottom: plotBottom}
}

// niceScale returns axis bounds and a step of 1, 2 or 5 times a power of ten that cover
// [lo, hi] in about n steps.
func niceScale(lo, hi float64, n int) (float64, float64, float64) {
	if hi <= lo {
		// One value (or none): give it some room around.
		d := math.Max(math.Abs(hi)*0.1, 1)
		lo, hi = lo-d, hi+d
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if raw <= m*mag {
			step = m * mag
			break
		}
	}
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step, step
}

func formatNum(v float64) string {
	if math.Abs(v-math.Round(v)) < 1e-9 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func yTicks(lo, hi, step float64, y func(float64) float64) []Tick {
	var ts []Tick
	for v := lo; v <= hi+step/2; v += step {
		ts = append(ts, Tick{Pos: round1(y(v)), Label: formatNum(v)})
	}
	return ts
}

// BarChart draws one bar per label (days, say), bars growing from zero.
func BarChart(title, unit string, labels []string, values []float64) Chart {
	c := newChart(title, unit)
	maxV, total := 0.0, 0.0
	for _, v := range values {
		maxV = math.Max(maxV, v)
		total += v
	}
	if len(values) == 0 || maxV == 0 {
		c.Empty = true
		c.Summary = "No data in this period."
		return c
	}
	_, hi, step := niceScale(0, maxV, yTickCount)
	y := func(v float64) float64 { return plotBottom - v/hi*plotH }
	c.YTicks = yTicks(0, hi, step, y)
	slot := plotW / float64(len(values))
	w := math.Max(slot*0.7, 1)
	every := int(math.Ceil(float64(len(values)) / maxXTicks))
	for i, v := range values {
		x := padLeft + float64(i)*slot + (slot-w)/2
		c.Bars = append(c.Bars, Bar{X: round1(x), Y: round1(y(v)), W: round1(w), H: round1(plotBottom - y(v)),
			Label: labels[i] + ": " + formatNum(v) + " " + unit})
		if i%every == 0 {
			c.XTicks = append(c.XTicks, Tick{Pos: round1(x + w/2), Label: labels[i]})
		}
	}
	c.Summary = formatNum(total) + " " + unit + " in all over " + strconv.Itoa(len(values)) + " days."
	return c
}

// LineChart draws timed values between from and to, the value axis fitted to the data.
func LineChart(title, unit string, pts []Point, from, to time.Time) Chart {
	return MultiLineChart(title, unit, []NamedPoints{{Points: pts}}, from, to)
}

// MultiLineChart draws one line per series between from and to on one value axis fitted to
// all of them. Named series get a colour each and a legend; a chart of one unnamed series is
// LineChart's.
func MultiLineChart(title, unit string, series []NamedPoints, from, to time.Time) Chart {
	c := newChart(title, unit)
	n := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		n += len(s.Points)
		for _, p := range s.Points {
			lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
		}
	}
	if n == 0 || !to.After(from) {
		c.Empty = true
		c.Summary = "No data in this period."
		return c
	}
	minV, maxV := lo, hi
	lo, hi, step := niceScale(lo, hi, yTickCount)
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 { return padLeft + t.Sub(from).Seconds()/span*plotW }
	y := func(v float64) float64 { return plotBottom - (v-lo)/(hi-lo)*plotH }
	c.YTicks = yTicks(lo, hi, step, y)
	format := dayFormat
	if to.Sub(from) <= shortRangeForHourFormatted {
		format = dayHourFormat
	}
	for i := 0; i <= maxXTicks-1; i++ {
		t := from.Add(time.Duration(float64(to.Sub(from)) * float64(i) / float64(maxXTicks-1)))
		c.XTicks = append(c.XTicks, Tick{Pos: round1(x(t)), Label: t.UTC().Format(format)})
	}
	var names []string
	for i, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		sr := Series{Name: s.Name}
		if s.Name != "" {
			c.Legend = true
			sr.Class = seriesClasses[i%len(seriesClasses)]
			names = append(names, s.Name)
		}
		var b strings.Builder
		slo, shi := math.Inf(1), math.Inf(-1)
		for j, p := range s.Points {
			px, py := round1(x(p.T)), round1(y(p.V))
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(formatNum(px) + "," + formatNum(py))
			slo, shi = math.Min(slo, p.V), math.Max(shi, p.V)
			// Dots only while they stay readable; the lines carry dense series.
			if n <= maxDots {
				label := p.T.UTC().Format(dayHourFormat) + ": " + formatNum(p.V) + " " + unit
				if s.Name != "" {
					label = s.Name + ", " + label
				}
				sr.Dots = append(sr.Dots, Dot{X: px, Y: py, Label: label})
			}
		}
		sr.Line = b.String()
		if s.Name != "" {
			sr.Summary = s.Name + ": " + samples(len(s.Points)) + ", from " + formatNum(slo) + " to " + formatNum(shi) + " " + unit + "."
		}
		c.Series = append(c.Series, sr)
	}
	c.Summary = samples(n) + ", from " + formatNum(minV) + " to " + formatNum(maxV) + " " + unit + "."
	if len(names) > 1 {
		c.Summary = samples(n) + " of " + strconv.Itoa(len(names)) + " people (" + strings.Join(names, ", ") + "), from " +
			formatNum(minV) + " to " + formatNum(maxV) + " " + unit + "."
	}
	return c
}

func samples(n int) string {
	if n == 1 {
		return "1 sample"
	}
	return strconv.Itoa(n) + " samples"
}

// DailySums adds values up per UTC day from from's day to to's day, one entry per day (zero
// for days without samples), with "Jan 2" labels.
func DailySums(pts []Point, from, to time.Time) ([]string, []float64) {
	day := func(t time.Time) time.Time {
		y, m, d := t.UTC().Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}
	first, last := day(from), day(to)
	var labels []string
	var sums []float64
	index := map[time.Time]int{}
	for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
		index[d] = len(sums)
		labels = append(labels, d.Format(dayFormat))
		sums = append(sums, 0)
	}
	for _, p := range pts {
		if i, ok := index[day(p.T)]; ok {
			sums[i] += p.V
		}
	}
	return labels, sums
}
