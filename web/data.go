package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
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

const (
	// customPeriod is the period selector's choice that takes the from and to dates.
	customPeriod = "custom"
	// maxCustomDays bounds a custom period (both days counted): a year, leap years too.
	// Longer periods would be all page limit and no chart.
	maxCustomDays = 366
	dateFormat    = "2006-01-02"
)

// chosenPeriod is the time range a data page shows.
type chosenPeriod struct {
	Key      string // a preset's key or customPeriod
	From, To time.Time
}

// choosePeriod reads the period from the query: period=custom (or no period but dates)
// takes from and to, whole UTC days, to at most today; anything else is a preset, 7 days by
// default. A bad custom range is an invalid error naming the field.
func choosePeriod(q url.Values, now time.Time) (chosenPeriod, error) {
	now = now.UTC()
	key := q.Get("period")
	fromS, toS := strings.TrimSpace(q.Get("from")), strings.TrimSpace(q.Get("to"))
	if key != customPeriod && (key != "" || fromS == "" && toS == "") {
		for _, pr := range periods() {
			if pr.Key == key {
				return chosenPeriod{Key: key, From: now.Add(-pr.Span), To: now}, nil
			}
		}
		return chosenPeriod{Key: "7d", From: now.Add(-7 * 24 * time.Hour), To: now}, nil
	}
	c := chosenPeriod{Key: customPeriod}
	switch {
	case fromS == "":
		return c, hub.FieldError(hub.EInvalid, "from", "choose the first day of the period")
	case toS == "":
		return c, hub.FieldError(hub.EInvalid, "to", "choose the last day of the period")
	}
	from, err := time.Parse(dateFormat, fromS)
	if err != nil {
		return c, hub.FieldError(hub.EInvalid, "from", "the first day is not a date such as 2026-01-31")
	}
	last, err := time.Parse(dateFormat, toS)
	if err != nil {
		return c, hub.FieldError(hub.EInvalid, "to", "the last day is not a date such as 2026-01-31")
	}
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch {
	case last.Before(from):
		return c, hub.FieldError(hub.EInvalid, "to", "the last day is before the first day")
	case from.After(today):
		return c, hub.FieldError(hub.EInvalid, "from", "the first day is in the future")
	case last.Sub(from) >= maxCustomDays*24*time.Hour:
		return c, hub.FieldError(hub.EInvalid, "to", "a period is at most %d days", maxCustomDays)
	}
	c.From = from
	// The last day counts whole, up to now when it is today (or later).
	c.To = last.Add(24*time.Hour - time.Nanosecond)
	if c.To.After(now) {
		c.To = now
	}
	return c, nil
}

type dataPageData struct {
	Devices []hub.DeviceView
	Device  *hub.DeviceView
	Periods []period
	Period  string
	// FromDate and ToDate are the date inputs' values: the custom dates as typed, or the
	// days of the preset period shown.
	FromDate, ToDate string
	Today            string
	From, To         time.Time
	Charts           []Chart
	Truncated        bool
	// NoStreams: the device records none of the charted streams.
	NoStreams   bool
	Unavailable bool
	// Invalid: the period could not be read; the page shows the error and no charts.
	Invalid bool
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
	now := p.clock.Now().UTC()
	d := dataPageData{Devices: all, Periods: periods(), Today: now.Format(dateFormat)}
	per, perr := choosePeriod(q, now)
	d.Period, d.From, d.To = per.Key, per.From, per.To
	if perr != nil {
		d.Invalid = true
		d.FromDate, d.ToDate = q.Get("from"), q.Get("to")
	} else {
		d.FromDate, d.ToDate = d.From.Format(dateFormat), d.To.Format(dateFormat)
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
		if perr != nil {
			p.formError(rq, "data", pg, perr)
			return
		}
		p.render(rq, http.StatusOK, "data", pg)
		return
	}
	dev, err := p.hub.Device(ctx, acc, id)
	if err != nil {
		p.fail(rq, err) // another account's device: 404
		return
	}
	d.Device = &dev
	if perr != nil {
		pg.Title, pg.Data = "Data: "+dev.Name, d
		p.formError(rq, "data", pg, perr)
		return
	}
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
			// A scale weighs several people: one line each, named in the legend.
			c := MultiLineChart("Weight", "kg", ByGroup(pts), d.From, d.To)
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
			v, group, err := sampleValue(stream, s.Data)
			if err != nil {
				return nil, false, fmt.Errorf("telemetry %s of %s: %w", stream, deviceID, err)
			}
			pts = append(pts, Point{T: s.TS, V: v, Group: group})
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

// unnamedPerson labels weights whose sample names nobody (the schema requires a name; older
// data may lack one).
const unnamedPerson = "(no name)"

// sampleValue is the charted number of one sample's body and the series it belongs to: the
// person weighed for weight, "" for the other streams.
func sampleValue(stream string, data any) (float64, string, error) {
	raw, ok := data.(json.RawMessage)
	if !ok {
		b, err := json.Marshal(data)
		if err != nil {
			return 0, "", err
		}
		raw = b
	}
	switch stream {
	case devices.StreamSteps:
		var s devices.StepsSample
		err := json.Unmarshal(raw, &s)
		return float64(s.Count), "", err
	case devices.StreamHeartRate:
		var s devices.HeartRateSample
		err := json.Unmarshal(raw, &s)
		return float64(s.BPM), "", err
	case devices.StreamWeight:
		var s devices.WeightSample
		err := json.Unmarshal(raw, &s)
		person := strings.TrimSpace(s.Person)
		if person == "" {
			person = unnamedPerson
		}
		return s.KG, person, err
	case devices.StreamBattery:
		var s devices.BatterySample
		err := json.Unmarshal(raw, &s)
		return s.Percent, "", err
	}
	return 0, "", fmt.Errorf("stream %q is not charted", stream)
}
