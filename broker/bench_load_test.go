package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/internal/hoststat"
)

// BENCH_LOAD=process runs the relay benchmark's load clients in a process of their own, as
// the reference figures' client ran (../shared/figures.md): then "cores" is the broker's
// process alone and the clients' CPU is reported apart, and the clients no longer share the
// broker's garbage collector and run queues. It is not the default because on two cores it
// costs the hub more than it spares it: two processes of two Ps each wait for the kernel's
// scheduler rather than Go's (2026-12-03, 20,000/s with 1 phone: hub p50 5.1-15.8 ms
// against 4.0-4.4 ms in-process; README). Both brokers always get the same client.

// loadSpec tells the load-client process what to connect and what to send.
type loadSpec struct {
	URL          string
	Kind         string // loadBare or loadHub: how a subscriber's message names its sample
	Subscribers  []loadConn
	Publishers   []loadConn
	PerPublisher int
	Rate         float64 // samples per second from all publishers together; 0: as fast as they can
}

// loadConn is one client connection: its credentials and its topic (a subscriber's filter,
// or where a publisher publishes).
type loadConn struct{ ID, User, Pass, Topic string }

const (
	loadBare = "bare" // payload {"seq","ts"} on the publisher's own topic
	loadHub  = "hub"  // a sync entry (devices.SyncEntry) naming the band and its seq

	loadSpecEnv  = "DEVICEHUB_BENCH_LOAD_SPEC"
	loadReady    = "devicehub-bench-load: connected"
	loadResultAt = "devicehub-bench-load: result "
)

// startLoad connects spec's subscribers and then its publishers and returns what runs the
// load.
func startLoad(tb testing.TB, spec loadSpec) func() clientRun {
	tb.Helper()
	names := make([]string, len(spec.Publishers))
	for i, p := range spec.Publishers {
		// How a subscriber's message names its publisher: the bare payload does not, so its
		// topic does; the hub's sync entry names the band.
		names[i] = p.Topic
		if spec.Kind == loadHub {
			names[i] = p.ID
		}
	}
	c := newCollector(names, spec.PerPublisher)
	onMsg := func(topic string, payload []byte) {
		c.add(sampleOf(spec.Kind, topic, payload))
	}
	for _, s := range spec.Subscribers {
		benchConnect(tb, spec.URL, s.ID, s.User, s.Pass, s.Topic, onMsg)
	}
	pubs := make([]benchClient, len(spec.Publishers))
	for i, p := range spec.Publishers {
		pubs[i] = benchConnect(tb, spec.URL, p.ID, p.User, p.Pass, "", nil)
	}
	return func() clientRun {
		for _, p := range pubs {
			defer p.close()
		}
		return driveClients(tb, pubs, func(i int) string { return spec.Publishers[i].Topic }, spec.PerPublisher, spec.Rate, c)
	}
}

// sampleOf names the sample a subscriber's message carries (its publisher's name, as
// collector knows it, and its seq) and when it was taken. It finds the few fields it needs
// instead of decoding the whole message: encoding/json took about a tenth of a core for the
// hub's sync entries at 20,000/s, on the two cores the broker under test also runs on
// (README); both brokers' messages take this path. A message it cannot read so is decoded
// in full.
func sampleOf(kind, topic string, payload []byte) (name string, seq uint64, ts time.Time) {
	if kind == loadHub {
		// Device, seq and ts come before the sample's body (devices.SyncEntry), which has
		// neither seq nor ts (devices.Telemetry.Body), so the first of each is the entry's.
		head, _, _ := bytes.Cut(payload, []byte(`"data":`))
		dev, ok1 := jsonScalar(head, `"device":`)
		n, ok2 := jsonUint(head, `"seq":`)
		at, ok3 := jsonScalar(head, `"ts":`)
		if t, err := time.Parse(time.RFC3339Nano, string(at)); err == nil && ok1 && ok2 && ok3 {
			return string(dev), n, t
		}
		var e devices.SyncEntry
		_ = json.Unmarshal(payload, &e)
		return e.Device, e.Seq, e.TS
	}
	n, ok1 := jsonUint(payload, `"seq":`)
	at, ok2 := jsonScalar(payload, `"ts":`)
	if t, err := time.Parse(time.RFC3339Nano, string(at)); err == nil && ok1 && ok2 {
		return topic, n, t
	}
	var v struct {
		Seq uint64    `json:"seq"`
		TS  time.Time `json:"ts"`
	}
	_ = json.Unmarshal(payload, &v)
	return topic, v.Seq, v.TS
}

// jsonUint is jsonScalar for a field that holds an unsigned integer.
func jsonUint(p []byte, name string) (uint64, bool) {
	v, ok := jsonScalar(p, name)
	if !ok || len(v) > 19 {
		return 0, false
	}
	var n uint64
	for _, d := range v {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + uint64(d-'0')
	}
	return n, true
}

// jsonScalar returns the value after the first occurrence of name (`"field":`) in p: a
// string's contents without its quotes, or a number. It knows no escapes (a string with
// one is not found): the benchmark's device IDs, numbers and timestamps have none.
func jsonScalar(p []byte, name string) ([]byte, bool) {
	_, v, ok := bytes.Cut(p, []byte(name))
	if !ok || len(v) == 0 {
		return nil, false
	}
	if v[0] == '"' {
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 || bytes.IndexByte(v[1:1+end], '\\') >= 0 {
			return nil, false
		}
		return v[1 : 1+end], true
	}
	end := bytes.IndexAny(v, ",}")
	if end <= 0 {
		return nil, false
	}
	return v[:end], true
}

// runLoad runs spec against a broker of this process and measures the process meanwhile.
func runLoad(b *testing.B, spec loadSpec) loadResult {
	b.Helper()
	if os.Getenv("BENCH_LOAD") != "process" {
		return measured(startLoad(b, spec))
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	// Bounded: a paced run takes seconds; a load process that hangs is killed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBenchLoadProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), loadSpecEnv+"="+string(raw))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the load-client process: %v", err)
	}
	out := bufio.NewScanner(stdout)
	out.Buffer(make([]byte, 64<<10), 1<<20)
	// next returns the process's next line that starts with prefix. The lines it skips are
	// the test framework's, kept for the failure message: a t.Fatal in the load-client
	// process reports on stdout, not stderr.
	var skipped strings.Builder
	next := func(prefix string) (string, error) {
		for out.Scan() {
			if rest, ok := strings.CutPrefix(out.Text(), prefix); ok {
				return rest, nil
			}
			skipped.WriteString(out.Text() + "\n")
		}
		if err := out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	fail := func(what string, err error) {
		stdin.Close()
		_ = cmd.Wait()
		b.Fatalf("load-client process: %s: %v\n%s%s", what, err, skipped.String(), stderr.String())
	}
	if _, err := next(loadReady); err != nil {
		fail("connecting", err)
	}
	var cr clientRun
	r := measured(func() clientRun {
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			fail("starting the load", err)
		}
		line, err := next(loadResultAt)
		if err == nil {
			err = json.Unmarshal([]byte(line), &cr)
		}
		if err != nil {
			fail("reading the result", err)
		}
		return cr
	})
	stdin.Close()
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("load-client process: %v\n%s%s%s", err, skipped.String(), rest, stderr.String())
	}
	return r
}

// TestBenchLoadProcess is not a test: it is the load-client process of the relay benchmark,
// which starts this test binary with the load's spec in DEVICEHUB_BENCH_LOAD_SPEC. It
// connects, says so on stdout, waits for a line on stdin, runs the load and writes what it
// saw as one JSON line.
func TestBenchLoadProcess(t *testing.T) {
	raw := os.Getenv(loadSpecEnv)
	if raw == "" {
		t.Skip("the relay benchmark's load-client process; runs only when the benchmark starts it")
	}
	var spec loadSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("%s: %v", loadSpecEnv, err)
	}
	run := startLoad(t, spec)
	fmt.Println(loadReady)
	// EOF (the benchmark went away) ends the process instead of leaving it waiting.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		if errors.Is(err, io.EOF) {
			t.Skip("the benchmark closed stdin before the load began")
		}
		t.Fatal(err)
	}
	cpu0 := hoststat.ProcessCPU()
	cr := run()
	cr.CPU = (hoststat.ProcessCPU() - cpu0).Seconds()
	b, err := json.Marshal(cr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(loadResultAt + string(b))
}

// TestSampleOfReadsWhatDecodingReads: the load clients' field scan names each message's
// sample as decoding it in full does, for both brokers' messages, so the benchmark's loss
// count and latencies do not depend on which of the two read it.
func TestSampleOfReadsWhatDecodingReads(t *testing.T) {
	at := time.Date(2026, 12, 3, 18, 0, 0, 123456789, time.UTC)
	entry, err := json.Marshal(devices.SyncEntry{Cursor: 41, Device: "dev_band7", Stream: devices.StreamSteps, Seq: 1234, TS: at,
		Data: json.RawMessage(`{"count":1234,"note":{"seq":9,"ts":"2000-01-01T00:00:00Z"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	bare := []byte(fmt.Sprintf(`{"seq":%d,"ts":%q,"count":%d}`, 77, at.Format(time.RFC3339Nano), 77))
	for _, c := range []struct {
		kind, topic string
		payload     []byte
		name        string
		seq         uint64
	}{
		{loadHub, "sync/x", entry, "dev_band7", 1234},
		{loadBare, "bench/pub3", bare, "bench/pub3", 77},
		// What the scan cannot read goes through encoding/json.
		{loadHub, "sync/x", []byte(`{"device":"dev\u005fb","seq":5,"ts":"` + at.Format(time.RFC3339Nano) + `","data":{}}`), "dev_b", 5},
		{loadBare, "bench/pub3", []byte(`{"ts":"` + at.Format(time.RFC3339Nano) + `", "seq" : 8}`), "bench/pub3", 8},
		{loadBare, "bench/pub3", []byte(`{"seq":8.5,"ts":"` + at.Format(time.RFC3339Nano) + `"}`), "bench/pub3", 0},
	} {
		name, seq, ts := sampleOf(c.kind, c.topic, c.payload)
		if name != c.name || seq != c.seq || !ts.Equal(at) {
			t.Errorf("%s %s: got %q %d %v, want %q %d %v", c.kind, c.payload, name, seq, ts, c.name, c.seq, at)
		}
	}
}
