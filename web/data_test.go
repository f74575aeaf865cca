package web_test

import (
	"fmt"
	"html"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
)

var (
	polylineRE = regexp.MustCompile(`<polyline class="line ([a-z0-9]+)" data-series="([^"]*)" points="([^"]*)"/>`)
	legendRE   = regexp.MustCompile(`<li data-series="([^"]*)"><span class="swatch ([a-z0-9]+)"></span>([^<]*)</li>`)
)

// weightLines is the weight chart's lines as "name class points-count".
func weightLines(t *testing.T, body string) []string {
	t.Helper()
	_, fig, ok := strings.Cut(body, `<figure class="chart" data-chart="Weight">`)
	if !ok {
		t.Fatal("no weight chart on the page")
	}
	fig, _, _ = strings.Cut(fig, "</figure>")
	var out []string
	for _, m := range polylineRE.FindAllStringSubmatch(fig, -1) {
		out = append(out, fmt.Sprintf("%s %s %d", m[2], m[1], len(strings.Fields(m[3]))))
	}
	return out
}

// TestDataPageWeightAndPeriods: a scale that weighs two people is charted as one line per
// person with a legend; a custom from/to period charts exactly those days; bad, reversed,
// incomplete and too long periods are a 400 page that says why and keeps the dates typed, with
// no chart; another account's scale is a 404 whatever the period.
func TestDataPageWeightAndPeriods(t *testing.T) {
	h, api, anna := startWithAnna(t)
	c := ctx(t)
	const who, password = annaEmail, annaPassword
	phone, err := anna.RegisterDevice(c, "phone", "Annas phone", "")
	if err != nil {
		t.Fatal(err)
	}
	// Pairing and the samples go straight to the hub: MQTT is not what this test is about
	// (TestPortalInBrowser sends telemetry over MQTT).
	scale := bindGadget(t, h, api, anna, "scale")
	hb := h.Hub()
	phoneID, err := hb.DeviceIdentity(c, phone.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Pair(c, phoneID, scale); err != nil {
		t.Fatal(err)
	}
	id, err := hb.DeviceIdentity(c, scale)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	seq := uint64(0)
	weigh := func(person string, kg float64, ago time.Duration) {
		t.Helper()
		seq++
		payload := fmt.Sprintf(`{"seq":%d,"ts":%q,"kg":%g,"person":%q}`, seq, now.Add(-ago).Format(time.RFC3339), kg, person)
		if err := hb.IngestTelemetry(c, id, devices.StreamWeight, []byte(payload)); err != nil {
			t.Fatalf("weight %s: %v", payload, err)
		}
	}
	day := 24 * time.Hour
	weigh("Anna", 61, 5*day)
	weigh("Boris", 82, 4*day)
	weigh("Anna", 60.5, 3*day)
	weigh("Boris", 81.5, 2*day)
	weigh("Anna", 60, day)
	weigh("Anna", 63, 40*day) // outside the last 7 days

	b := newBrowser(t, h.URL())
	b.signIn(api, who, password)
	path := "/devices/" + scale + "/data"

	resp, body := b.get(path + "?period=7d")
	if resp.StatusCode != http.StatusOK || errorOf(body) != "" {
		t.Fatalf("data page: %d %q", resp.StatusCode, errorOf(body))
	}
	if got, want := weightLines(t, body), []string{"Anna s0 3", "Boris s1 2"}; !slices.Equal(got, want) {
		t.Fatalf("weight lines %v, want %v", got, want)
	}
	legend := legendRE.FindAllStringSubmatch(body, -1)
	if len(legend) != 2 || legend[0][1] != "Anna" || legend[0][2] != "s0" || !strings.Contains(legend[0][3], "3 samples, from 60 to 61 kg") ||
		legend[1][1] != "Boris" || legend[1][2] != "s1" {
		t.Fatalf("legend %q", legend)
	}
	if !strings.Contains(body, "5 samples of 2 people (Anna, Boris)") {
		t.Error("no summary naming both people")
	}

	// A custom period around the old sample: only it.
	from, to := now.Add(-45*day).Format("2006-01-02"), now.Add(-35*day).Format("2006-01-02")
	resp, body = b.get(path + "?period=custom&from=" + from + "&to=" + to)
	if resp.StatusCode != http.StatusOK || errorOf(body) != "" {
		t.Fatalf("custom period: %d %q", resp.StatusCode, errorOf(body))
	}
	if got, want := weightLines(t, body), []string{"Anna s0 1"}; !slices.Equal(got, want) {
		t.Fatalf("custom period: weight lines %v, want %v", got, want)
	}
	if !strings.Contains(body, "from "+from+" 00:00:00 UTC to "+to+" 23:59:59 UTC") ||
		!strings.Contains(body, `<option value="custom" selected>`) || !strings.Contains(body, `value="`+from+`"`) {
		t.Error("custom period: the page does not show the days chosen")
	}
	// The preset pages fill the date inputs with the days they show.
	if _, body := b.get(path + "?period=30d"); !strings.Contains(body, `id="data-from" value="`+now.Add(-30*day).Format("2006-01-02")+`"`) {
		t.Error("preset period: date inputs not filled")
	}

	for q, want := range map[string]string{
		"period=custom&from=" + to + "&to=" + from:    "before the first day",
		"period=custom&from=2024-01-01&to=2025-1-01":  "not a date",
		"period=custom&from=2020-01-01&to=2021-01-01": "at most 366 days",
		"period=custom&from=" + from:                  "last day",
		"from=%3Cb%3E&to=" + to:                       "not a date",
	} {
		resp, body := b.get(path + "?" + q)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorOf(body), want) || strings.Contains(body, "<figure") {
			t.Errorf("GET ?%s: %d %q, want 400 %q and no chart", q, resp.StatusCode, errorOf(body), want)
		}
		if strings.Contains(body, "<b>") {
			t.Errorf("GET ?%s: the typed date is not escaped", q)
		}
		if strings.HasPrefix(q, "from=%3C") && !strings.Contains(html.UnescapeString(body), `value="<b>"`) {
			t.Errorf("GET ?%s: the typed date is not kept", q)
		}
	}

	// Boris's scale is a 404, with a bad period too.
	lb, err := api.CreateAccount(c, "boris@example.com", "boris-password-42")
	if err != nil {
		t.Fatal(err)
	}
	bp, err := api.WithToken(lb.Token).RegisterDevice(c, "phone", "Boris's phone", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"?period=7d", "?period=custom&from=x&to=y"} {
		if resp, body := b.get("/devices/" + bp.DeviceID + "/data" + q); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "Boris") {
			t.Errorf("another account's device data %s: %d", q, resp.StatusCode)
		}
	}
}
