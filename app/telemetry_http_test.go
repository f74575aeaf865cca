package app_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/devices"
)

// TestTelemetryEndpoint: the owner pages through a band's samples, oldest first, filtered by
// stream and by the samples' own time (from inclusive, to exclusive); a bad parameter is 400
// naming it; another account gets 404, exactly as for a device that does not exist.
func TestTelemetryEndpoint(t *testing.T) {
	w, phone, band := pairWorld(t)
	ctx := testCtx(t)
	pair(t, phone, band, 1)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := 1; i <= 5; i++ {
		p := fmt.Sprintf(`{"seq":%d,"ts":%q,"count":%d}`, i, base.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), 100*i)
		if tok := band.c.Publish(devices.TelemetryTopic(band.id, devices.StreamSteps), 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	band.telemetry(t, devices.StreamBattery, 1, `"percent":80`)
	phone.waitFor(t, 6)

	type page struct {
		Samples []struct {
			Stream string
			Seq    uint64
			TS     time.Time
		}
		Next int64
	}
	get := func(c *apiclient.Client, q url.Values) (page, error) {
		var p page
		err := c.Do(ctx, "GET", "/api/v1/devices/"+band.id+"/telemetry?"+q.Encode(), nil, &p)
		return p, err
	}
	seqs := func(p page) string {
		s := ""
		for _, x := range p.Samples {
			s += fmt.Sprintf("%s:%d ", x.Stream, x.Seq)
		}
		return s
	}

	// Paging over the steps stream, two at a time.
	q := url.Values{"stream": {"steps"}, "limit": {"2"}}
	var all string
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("paging does not end: %s", all)
		}
		p, err := get(w.anna, q)
		if err != nil {
			t.Fatal(err)
		}
		all += seqs(p)
		if p.Next == 0 {
			break
		}
		q.Set("after", fmt.Sprint(p.Next))
	}
	if all != "steps:1 steps:2 steps:3 steps:4 steps:5 " {
		t.Fatalf("pages: %q", all)
	}

	// The samples' own time: minute 2 inclusive to minute 4 exclusive.
	p, err := get(w.anna, url.Values{"stream": {"steps"},
		"from": {base.Add(2 * time.Minute).Format(time.RFC3339)}, "to": {base.Add(4 * time.Minute).Format(time.RFC3339)}})
	if err != nil || seqs(p) != "steps:2 steps:3 " {
		t.Fatalf("from/to: %q, %v", seqs(p), err)
	}
	// Every stream when none is named.
	if p, err := get(w.anna, url.Values{}); err != nil || len(p.Samples) != 6 {
		t.Fatalf("all streams: %q, %v", seqs(p), err)
	}

	for _, bad := range []struct{ key, val string }{{"from", "yesterday"}, {"limit", "0"}, {"limit", "5000"}, {"after", "-1"}, {"stream", "a/b"}} {
		_, err := get(w.anna, url.Values{bad.key: {bad.val}})
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != bad.key {
			t.Errorf("%s=%s: %v, want 400 naming %s", bad.key, bad.val, err, bad.key)
		}
	}

	_, errOther := get(w.boris, url.Values{})
	errNone := w.boris.Do(ctx, "GET", "/api/v1/devices/dev_doesnotexist/telemetry", nil, nil)
	var a, b *apiclient.Error
	if !errors.As(errOther, &a) || !errors.As(errNone, &b) || a.Status != 404 || *a != *b {
		t.Fatalf("another account's band: %v; a device that does not exist: %v; want the same 404", errOther, errNone)
	}
}

// TestRefusedTelemetryCountedNotStored: a malformed sample is answered on the band's res
// topic naming the field, counted under its reason in /metrics, and not stored; so is a
// sample from a band that is not paired.
func TestRefusedTelemetryCountedNotStored(t *testing.T) {
	w, phone, band := pairWorld(t)
	ctx := testCtx(t)
	band.telemetry(t, devices.StreamSteps, 1, `"count":5`)
	band.refused(t, "telemetry:steps:1", "not_paired")
	pair(t, phone, band, 1)
	band.telemetry(t, devices.StreamSteps, 2, `"count":"many"`)
	band.refused(t, "telemetry:steps:2", "invalid")
	band.telemetry(t, devices.StreamSteps, 3, `"count":7`)
	if es := phone.waitFor(t, 1); es[0].Seq != 3 {
		t.Fatalf("phone got %+v, want only seq 3", es)
	}
	metrics := get(t, w.h.URL()+"/metrics")
	for _, want := range []string{
		`devicehub_acl_refusals_total{action="telemetry",reason="invalid"} 1`,
		`devicehub_acl_refusals_total{action="telemetry",reason="not_paired"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(metrics, "acl_refusals"))
		}
	}
	var page struct{ Samples []struct{ Seq uint64 } }
	if err := w.anna.Do(ctx, "GET", "/api/v1/devices/"+band.id+"/telemetry", nil, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Samples) != 1 || page.Samples[0].Seq != 3 {
		t.Fatalf("stored %+v, want only seq 3", page.Samples)
	}
}
