package web

import "testing"

// TestSafeNext: ?next= after sign-in goes to a local path or to /devices, never to another
// site, however the URL is spelt to fool a browser.
func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"":                              "/devices",
		"/devices/dev_1/find?x=1#a":     "/devices/dev_1/find?x=1#a",
		"/security":                     "/security",
		"/data?device=dev_1&period=30d": "/data?device=dev_1&period=30d",
		"//evil.example":                "/devices",
		"///evil.example":               "/devices",
		"https://evil.example":          "/devices",
		"http:/evil.example":            "/devices",
		"/\\evil.example":               "/devices",
		"\\\\evil.example":              "/devices",
		"/\t/evil.example":              "/devices", // browsers drop the tab: //evil.example
		"/\n/evil.example":              "/devices",
		"/\r\n/evil.example":            "/devices",
		"\x00//evil.example":            "/devices",
		" //evil.example":               "/devices", // browsers trim leading spaces
		"javascript:alert(1)":           "/devices",
		"JavaScript:alert(1)":           "/devices",
		"data:text/html,x":              "/devices",
		"evil.example":                  "/devices",
		"devices":                       "/devices",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}
