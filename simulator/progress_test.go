package simulator

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestLineProgress: off a terminal, progress is plain lines: the phase and its size, a line
// per tenth done (one line when a step crosses several, with the true percentage), status
// lines, and the end of the phase; no carriage returns or escape sequences.
func TestLineProgress(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf, false)
	p.Phase("provision", 0)
	p.Add(500)
	p.Done()
	p.Phase("connect", 20)
	for range 20 {
		p.Add(1)
	}
	p.Done()
	p.Phase("publish", 3)
	p.Status("sent 1 acked 1")
	p.Add(3) // every tenth at once: one line
	p.Done()
	out := buf.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		`^provision$`,
		`^provision: done, 500 in \d+\.\ds$`,
		`^connect: 20 to do$`,
	}
	for i := 1; i <= 10; i++ {
		want = append(want, `^connect: `+strconv.Itoa(2*i)+`/20 \(`+strconv.Itoa(10*i)+`%\) \d+\.\ds$`)
	}
	want = append(want, `^connect: done, 20 in \d+\.\ds$`, `^publish: 3 to do$`, `^publish: sent 1 acked 1$`)
	want = append(want, `^publish: 3/3 \(100%\) \d+\.\ds$`)
	want = append(want, `^publish: done, 3 in `)
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i+1, lines[i], re)
		}
	}
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("control characters in plain progress: %q", out)
	}
}
