package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/store/sqlite"
)

// faultBand is one band of the fault test: its credentials and which of its messages the hub
// acknowledged.
type faultBand struct {
	id, secret string
	mu         sync.Mutex
	acked      map[uint64]bool
}

func (b *faultBand) ack(seq uint64) {
	b.mu.Lock()
	b.acked[seq] = true
	b.mu.Unlock()
}

func (b *faultBand) missing(upTo uint64) []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []uint64
	for s := uint64(1); s <= upTo; s++ {
		if !b.acked[s] {
			out = append(out, s)
		}
	}
	return out
}

// TestKill9DuringIngest: the hub is killed with SIGKILL at 20 random points while two bands
// publish 10,000 uniquely numbered QoS 1 samples. After each crash the database passes
// PRAGMA integrity_check; the bands resend what was not acknowledged (at-least-once); at the
// end every acknowledged sample is in the sync log exactly once and reaches the phone, which
// connects with a clean session, in order.
func TestKill9DuringIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the hub and kills it 20 times")
	}
	const perBand, kills = 5000, 20
	bin := apptest.BuildBinary(t)
	dir := t.TempDir()
	p := apptest.StartProcess(t, bin, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Anna, her phone, two bands bound and paired with the phone.
	api := apiclient.New("http://" + p.HTTPAddr)
	api.AdminToken = "test-admin-token"
	la, err := api.CreateAccount(ctx, "anna@example.com", "anna-likes-long-walks")
	if err != nil {
		t.Fatal(err)
	}
	anna := api.WithToken(la.Token)
	phoneCreds, err := anna.RegisterDevice(ctx, "phone", "phone", "")
	if err != nil {
		t.Fatal(err)
	}
	factory, err := api.Provision(ctx, "band", 2)
	if err != nil {
		t.Fatal(err)
	}
	phone := connectRaw(t, "tcp://"+p.MQTTAddr, phoneCreds.DeviceID, phoneCreds.Secret, true)
	var bands []*faultBand
	for _, f := range factory {
		c, err := client.Connect(ctx, client.Options{Broker: "tcp://" + p.MQTTAddr, DeviceID: f.DeviceID, Secret: f.Secret, CleanSession: true})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := c.Request(ctx, devices.OpBindCode, nil)
		if err != nil {
			t.Fatal(err)
		}
		var bc devices.BindCodeResult
		_ = json.Unmarshal(raw, &bc)
		if err := anna.Bind(ctx, f.DeviceID, bc.Code); err != nil {
			t.Fatal(err)
		}
		var bound devices.BoundArgs
		_ = json.Unmarshal(nextCommand(t, c, devices.CmdBound).Args, &bound)
		c.Close()
		if _, err := phone.request(t, devices.OpPair, devices.PairArgs{DeviceID: f.DeviceID}); err != nil {
			t.Fatalf("pair: %v", err)
		}
		bands = append(bands, &faultBand{id: f.DeviceID, secret: bound.Secret, acked: map[uint64]bool{}})
	}
	phone.close()

	// Kill points: 20 distinct counts of acknowledged samples, chosen at random.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	var points []int64
	for len(points) < kills {
		n := int64(rng.IntN(2*perBand-200) + 100)
		if !slices.Contains(points, n) {
			points = append(points, n)
		}
	}
	slices.Sort(points)
	t.Logf("kill points (acknowledged samples): %v", points)

	var total atomic.Int64
	for epoch := 0; epoch <= kills; epoch++ {
		killAt := int64(-1)
		if epoch < kills {
			killAt = points[epoch]
		}
		mqttURL := "tcp://" + p.MQTTAddr
		var wg sync.WaitGroup
		for _, b := range bands {
			wg.Add(1)
			go func() {
				defer wg.Done()
				publishUntilKilled(mqttURL, b, perBand, &total, killAt, p)
			}()
		}
		wg.Wait()
		if epoch == kills {
			break
		}
		p.Kill()
		checkIntegrity(t, filepath.Join(dir, "devicehub.db"))
		p = apptest.StartProcess(t, bin, dir)
	}
	for _, b := range bands {
		if m := b.missing(perBand); len(m) > 0 {
			t.Fatalf("band %s: %d samples never acknowledged, e.g. %v", b.id, len(m), m[:min(5, len(m))])
		}
	}

	// The phone, with a clean session, gets everything from its durable cursor: each sample
	// exactly once, in order per band.
	phone = connectRaw(t, "tcp://"+p.MQTTAddr, phoneCreds.DeviceID, phoneCreds.Secret, true)
	seen := map[string]map[uint64]bool{}
	last := map[string]uint64{}
	var lastCursor int64
	got := 0
	apptest.Eventually(t, 3*time.Minute, func() error {
		es := phone.snapshot()
		for _, e := range es[got:] {
			if e.Gap != nil {
				return fmt.Errorf("unexpected gap %+v", *e.Gap)
			}
			if seen[e.Device] == nil {
				seen[e.Device] = map[uint64]bool{}
			}
			if seen[e.Device][e.Seq] {
				t.Fatalf("band %s seq %d delivered twice", e.Device, e.Seq)
			}
			if e.Seq < last[e.Device] {
				t.Fatalf("band %s: seq %d after %d", e.Device, e.Seq, last[e.Device])
			}
			seen[e.Device][e.Seq], last[e.Device] = true, e.Seq
			lastCursor = e.Cursor
		}
		got = len(es)
		if got > 0 {
			phone.ack(t, lastCursor)
		}
		if got < 2*perBand {
			return fmt.Errorf("phone has %d of %d samples", got, 2*perBand)
		}
		return nil
	})
	if got != 2*perBand {
		t.Fatalf("phone received %d entries, want %d", got, 2*perBand)
	}
}

// publishUntilKilled publishes the band's samples that are not acknowledged yet, up to 64 in
// flight, until all are acknowledged or the connection breaks. When the total of acknowledged
// samples reaches killAt, it kills the hub itself, so the kill lands mid-stream.
func publishUntilKilled(url string, b *faultBand, n int, total *atomic.Int64, killAt int64, p *apptest.Process) {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(b.id).SetUsername(b.id).SetPassword(b.secret).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetCleanSession(true)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return
	}
	defer c.Disconnect(0)
	window := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, seq := range b.missing(uint64(n)) {
		if !c.IsConnectionOpen() {
			break
		}
		window <- struct{}{}
		payload := fmt.Sprintf(`{"seq":%d,"ts":%q,"count":%d}`, seq, time.Now().UTC().Format(time.RFC3339Nano), seq%100)
		tok := c.Publish(devices.TelemetryTopic(b.id, devices.StreamSteps), 1, false, payload)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-window }()
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				b.ack(seq)
				if total.Add(1) == killAt {
					p.Kill()
				}
			}
		}()
	}
	wg.Wait()
}

func checkIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	defer db.Close()
	if res, err := db.IntegrityCheck(context.Background()); err != nil || res != "ok" {
		t.Fatalf("integrity_check after crash = %q, %v", res, err)
	}
}
