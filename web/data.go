package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// Telemetry reads are paged by the hub (at most 1000 samples a page); a chart reads at most
// this many pages, which bounds the work of one page view.
const (
	telemetryPage     = 1000
	maxTelemetryPages = 20
)

// period is one choice of the data page's period selector.
type period struct {
	Key   string
	Label string
	Span  time.Duration
}

func periods() []period {
	return []period{
		{"1d", "Last 24 hours", 24 * time.Hour},
		{"7d", "Last 7 days", 7 * 24 * time.Hour},
		{"30d", "Last 30 days", 30 * 24 * time.Hour},
		{"90d", "Last 90 days", 90 * 24 * time.Hour},
	}
}

type dataPageData struct {
	Devices   []hub.DeviceView
	Device    *hub.DeviceView
	Periods   []period
	Period    string
	From, To  time.Time
	Charts    []Chart
	Truncated bool
	// NoStreams: the device records none of the charted streams.
	NoStreams   bool
	Unavailable bool
}

// unavailable reports whether err says a hub feature is switched off or not built yet
// ("… is not configured"), which the pages show as "not available yet" rather than a 500.
func unavailable(err error) bool {
	e := hub.AsError(err)
	return e != nil && e.Code == hub.EInternal
}

// dataPage shows charts of one device's synced telemetry for a period: steps per day, heart
// rate and weight over time, drawn as SVG on the server.
func (p *Portal) dataPage(rq *request) {
	ctx, acc := rq.Context(), rq.principal.AccountID
	q := rq.URL.Query()
	id := rq.PathValue("id")
	if id == "" {
		id = q.Get("device")
	}
	all, err := p.hub.Devices(ctx, acc)
	if err != nil {
		p.fail(rq, err)
		return
	}
	d := dataPageData{Devices: all, Periods: periods(), Period: "7d"}
	span := 7 * 24 * time.Hour
	for _, pr := range d.Periods {
		if pr.Key == q.Get("period") {
			d.Period, span = pr.Key, pr.Span
		}
	}
	if id == "" {
		// No choice yet: the first device that records something we chart.
		for i := range all {
			if len(chartStreams(all[i].Type)) > 0 {
				id = all[i].ID
				break
			}
		}
	}
	pg := page{Title: "Data", Nav: "data"}
	if id == "" {
		pg.Data = d
		p.render(rq, http.StatusOK, "data", pg)
		return
	}
	dev, err := p.hub.Device(ctx, acc, id)
	if err != nil {
		p.fail(rq, err) // another account's device: 404
		return
	}
	d.Device = &dev
	d.To = p.clock.Now().UTC()
	d.From = d.To.Add(-span)
	streams := chartStreams(dev.Type)
	d.NoStreams = len(streams) == 0
	for _, s := range streams {
		pts, truncated, err := p.series(rq, dev.ID, s, d.From, d.To)
		if unavailable(err) {
			d.Unavailable = true
			break
		}
		if err != nil {
			p.fail(rq, err)
			return
		}
		d.Truncated = d.Truncated || truncated
		switch s {
		case devices.StreamSteps:
			labels, sums := DailySums(pts, d.From, d.To)
			d.Charts = append(d.Charts, BarChart("Steps per day", "steps", labels, sums))
		case devices.StreamHeartRate:
			d.Charts = append(d.Charts, LineChart("Heart rate", "bpm", pts, d.From, d.To))
		case devices.StreamWeight:
			c := LineChart("Weight", "kg", pts, d.From, d.To)
			c.Class = "weight"
			d.Charts = append(d.Charts, c)
		}
	}
	pg.Title = "Data: " + dev.Name
	pg.Data = d
	p.render(rq, http.StatusOK, "data", pg)
}

// chartStreams are the charted streams a device type records, in page order.
func chartStreams(t devices.Type) []string {
	info, ok := devices.Info(t)
	if !ok {
		return nil
	}
	var out []string
	for _, s := range []string{devices.StreamSteps, devices.StreamHeartRate, devices.StreamWeight} {
		if slices.Contains(info.Streams, s) {
			out = append(out, s)
		}
	}
	return out
}

// series reads one stream of a device in [from, to] as points, oldest first, and whether it
// stopped at the page limit.
func (p *Portal) series(rq *request, deviceID, stream string, from, to time.Time) ([]Point, bool, error) {
	var pts []Point
	var after int64
	for range maxTelemetryPages {
		pg, err := p.hub.Telemetry(rq.Context(), rq.principal.AccountID, deviceID, stream, from, to, after, telemetryPage)
		if err != nil {
			return nil, false, err
		}
		for _, s := range pg.Samples {
			v, err := sampleValue(stream, s.Data)
			if err != nil {
				return nil, false, fmt.Errorf("telemetry %s of %s: %w", stream, deviceID, err)
			}
			pts = append(pts, Point{T: s.TS, V: v})
		}
		if pg.Next == 0 {
			// Samples come in commit order; a device that synced late sent older samples
			// after newer ones, and a line must go left to right.
			slices.SortStableFunc(pts, func(a, b Point) int { return a.T.Compare(b.T) })
			return pts, false, nil
		}
		after = pg.Next
	}
	slices.SortStableFunc(pts, func(a, b Point) int { return a.T.Compare(b.T) })
	return pts, true, nil
}

// sampleValue is the charted number of one sample's body.
func sampleValue(stream string, data any) (float64, error) {
	raw, ok := data.(json.RawMessage)
	if !ok {
		b, err := json.Marshal(data)
		if err != nil {
			return 0, err
		}
		raw = b
	}
	switch stream {
	case devices.StreamSteps:
		var s devices.StepsSample
		err := json.Unmarshal(raw, &s)
		return float64(s.Count), err
	case devices.StreamHeartRate:
		var s devices.HeartRateSample
		err := json.Unmarshal(raw, &s)
		return float64(s.BPM), err
	case devices.StreamWeight:
		var s devices.WeightSample
		err := json.Unmarshal(raw, &s)
		return s.KG, err
	case devices.StreamBattery:
		var s devices.BatterySample
		err := json.Unmarshal(raw, &s)
		return s.Percent, err
	}
	return 0, fmt.Errorf("stream %q is not charted", stream)
}
