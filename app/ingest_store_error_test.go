package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the second, outside connection to the hub's database

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/internal/mqttwire"
)

// These tests prove that a store failure during ingest never produces a success ack
// (broker/ingest.go): a telemetry publish is acknowledged only after its sample is committed;
// on a store error an MQTT 5 client gets PUBACK 0x83 and a 3.1.1 client is disconnected
// without a PUBACK, and the sample is stored exactly once when the client sends it again.
// The store fails for real and from outside the hub, with nothing mocked and no hook in the
// hub: another connection holds SQLite's write lock, as another process would, so the hub's
// BEGIN fails with "database is locked" (SQLITE_BUSY) after store.busy_timeout; or the
// operating system refuses the hub process's file writes, so its COMMIT fails with a disk
// I/O error. The hub does not tell store errors apart: every one (busy, I/O error, disk
// full, read-only file) is a non-hub error and reaches the broker as hub.EInternal.

// ingestHangGuard bounds every blocking read so a broken server fails the test instead of
// hanging it; it is not a time limit under test.
const ingestHangGuard = time.Minute

// writeLock is SQLite's write lock on the hub's database, held by a connection of its own.
type writeLock struct {
	release func()
}

// holdWriteLock opens the database file a second time (not through the hub) and takes the
// write lock with BEGIN IMMEDIATE on a dedicated connection; release rolls back and closes
// (also at the end of the test).
func holdWriteLock(t *testing.T, path string) *writeLock {
	t.Helper()
	ctx := testCtx(t)
	q := url.Values{"_busy_timeout": {"10000"}} // waits for a commit of the hub under way
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		conn.Close()
		db.Close()
		t.Fatalf("take the write lock: %v", err)
	}
	l := &writeLock{}
	l.release = sync.OnceFunc(func() {
		if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Errorf("release the write lock: %v", err)
		}
		conn.Close()
		db.Close()
	})
	t.Cleanup(l.release)
	return l
}

// --- raw MQTT (3.1.1 and 5) over TCP, frames built by hand (internal/mqttwire) ---

func ingStr(s string) []byte                         { return mqttwire.Str(s) }
func ingFrame(hdr byte, parts ...[]byte) []byte      { return mqttwire.Frame(hdr, parts...) }
func ingReadPacket(c net.Conn) (byte, []byte, error) { return mqttwire.ReadPacket(c) }

// mqttDevice is one raw MQTT connection of a device.
type mqttDevice struct {
	c       net.Conn
	version byte
	id      string
}

// dialDevice connects as device id (client ID = username = device ID, password = secret) at
// version 4 (3.1.1) or 5, with a clean session or not, and checks the CONNACK.
func dialDevice(t *testing.T, addr string, version byte, id, secret string, clean bool) *mqttDevice {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(ingestHangGuard))
	flags := byte(0xC0) // user name, password
	if clean {
		flags |= 0x02
	}
	var connect []byte
	if version == 5 {
		connect = ingFrame(0x10, ingStr("MQTT"), []byte{5, flags, 0, 60}, []byte{0}, ingStr(id), ingStr(id), ingStr(secret))
	} else {
		connect = ingFrame(0x10, ingStr("MQTT"), []byte{4, flags, 0, 60}, ingStr(id), ingStr(id), ingStr(secret))
	}
	if _, err := c.Write(connect); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	hdr, body, err := ingReadPacket(c)
	if err != nil || hdr != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK: hdr %#x body % x err %v", hdr, body, err)
	}
	return &mqttDevice{c: c, version: version, id: id}
}

// publish sends a QoS 1 PUBLISH of payload to the device's telemetry stream.
func (d *mqttDevice) publish(t *testing.T, stream string, pid uint16, dup bool, payload []byte) {
	t.Helper()
	hdr := byte(0x32) // PUBLISH, QoS 1
	if dup {
		hdr |= 0x08
	}
	parts := [][]byte{ingStr(devices.TelemetryTopic(d.id, stream)), {byte(pid >> 8), byte(pid)}}
	if d.version == 5 {
		parts = append(parts, []byte{0}) // no properties
	}
	parts = append(parts, payload)
	if _, err := d.c.Write(ingFrame(hdr, parts...)); err != nil {
		t.Fatalf("write PUBLISH: %v", err)
	}
}

// nextPuback reads until the PUBACK of pid and returns its reason code (0x00 when the
// packet carries none, as MQTT 5 allows and 3.1.1 always does).
func (d *mqttDevice) nextPuback(t *testing.T, pid uint16) byte {
	t.Helper()
	for {
		hdr, body, err := ingReadPacket(d.c)
		if err != nil {
			t.Fatalf("waiting for the PUBACK of packet %d: %v", pid, err)
		}
		if hdr>>4 != 4 || len(body) < 2 {
			t.Logf("skipped packet %#x % x", hdr, body)
			continue
		}
		if got := uint16(body[0])<<8 | uint16(body[1]); got != pid {
			t.Fatalf("PUBACK for packet %d, want %d", got, pid)
		}
		if len(body) == 2 {
			return 0x00
		}
		return body[2]
	}
}

// closedWithoutPuback reads until the server closes the connection and fails if a PUBACK
// arrives first.
func (d *mqttDevice) closedWithoutPuback(t *testing.T) {
	t.Helper()
	for {
		hdr, body, err := ingReadPacket(d.c)
		if err == nil {
			if hdr>>4 == 4 {
				t.Fatalf("got PUBACK % x: a publish the store refused was acknowledged", body)
			}
			t.Logf("skipped packet %#x % x", hdr, body)
			continue
		}
		var ne net.Error
		if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server neither acknowledged nor closed the connection: %v", err)
		}
		return // EOF or reset: closed by the server
	}
}

// stepsSample is a valid steps sample with seq.
func stepsSample(seq uint64) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"ts":%q,"count":%d}`, seq, time.Now().UTC().Format(time.RFC3339Nano), 100+seq)
}

// ingestWorld is a running hub (in-process or its own process), Anna signed in, her phone
// connected (to see the relay), and bands bound to her and paired with the phone; the bands
// are offline, for a test to connect them raw.
type ingestWorld struct {
	httpURL, mqttAddr string
	anna              *apiclient.Client
	phone             *rawDev
	bands             []apiclient.Credentials // with their binding secrets
}

// newIngestWorld sets up the world through the hub's public API and MQTT only.
func newIngestWorld(t *testing.T, httpURL, mqttAddr, adminToken string, bands int) *ingestWorld {
	t.Helper()
	ctx := testCtx(t)
	api := apiclient.New(httpURL)
	api.AdminToken = adminToken
	la, err := api.CreateAccount(ctx, "anna@example.com", "anna-likes-long-walks")
	if err != nil {
		t.Fatal(err)
	}
	w := &ingestWorld{httpURL: httpURL, mqttAddr: mqttAddr, anna: api.WithToken(la.Token)}
	phoneCreds, err := w.anna.RegisterDevice(ctx, "phone", "Anna's phone", "imei-anna")
	if err != nil {
		t.Fatal(err)
	}
	factory, err := api.Provision(ctx, "band", bands)
	if err != nil {
		t.Fatal(err)
	}
	w.phone = connectRaw(t, "tcp://"+mqttAddr, phoneCreds.DeviceID, phoneCreds.Secret, true)
	for _, f := range factory {
		c, err := client.Connect(ctx, client.Options{Broker: "tcp://" + mqttAddr, DeviceID: f.DeviceID, Secret: f.Secret, CleanSession: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.anna.Bind(ctx, f.DeviceID, bindCode(t, c)); err != nil {
			t.Fatal(err)
		}
		var bound devices.BoundArgs
		if err := json.Unmarshal(nextCommand(t, c, devices.CmdBound).Args, &bound); err != nil || bound.Secret == "" {
			t.Fatalf("bound command: %v", err)
		}
		c.Close()
		if _, err := w.phone.request(t, devices.OpPair, devices.PairArgs{DeviceID: f.DeviceID}); err != nil {
			t.Fatalf("pair: %v", err)
		}
		f.Secret = bound.Secret
		w.bands = append(w.bands, f)
	}
	w.waitClients(t, 1) // the phone only
	return w
}

// waitClients waits until the broker counts n connected MQTT clients, so that a closed
// connection has been cleaned up before the same client ID connects again.
func (w *ingestWorld) waitClients(t *testing.T, n int) {
	t.Helper()
	want := fmt.Sprintf("devicehub_mqtt_clients_connected %d\n", n)
	apptest.Eventually(t, 10*time.Second, func() error {
		if body := get(t, w.httpURL+"/metrics"); !strings.Contains(body, want) {
			return fmt.Errorf("want %q, /metrics has %q", want, grep(body, "devicehub_mqtt_clients_connected"))
		}
		return nil
	})
}

// storedSeqs reads a band's stored steps samples through the HTTP API and counts them by seq.
func (w *ingestWorld) storedSeqs(t *testing.T, bandID string) map[uint64]int {
	t.Helper()
	var page hub.TelemetryPage
	q := url.Values{"stream": {devices.StreamSteps}, "limit": {"1000"}}
	if err := w.anna.Do(testCtx(t), "GET", "/api/v1/devices/"+bandID+"/telemetry?"+q.Encode(), nil, &page); err != nil {
		t.Fatalf("read telemetry: %v", err)
	}
	n := map[uint64]int{}
	for _, s := range page.Samples {
		n[s.Seq]++
	}
	return n
}

// relayedOnce waits until the phone got a band's sample seq and checks it got it once.
func (w *ingestWorld) relayedOnce(t *testing.T, bandID string, seq uint64) {
	t.Helper()
	apptest.Eventually(t, 10*time.Second, func() error {
		n := 0
		for _, e := range w.phone.snapshot() {
			if e.Gap == nil && e.Device == bandID && e.Seq == seq {
				n++
			}
		}
		switch {
		case n == 0:
			return fmt.Errorf("phone has not received seq %d", seq)
		case n > 1:
			t.Fatalf("phone received seq %d %d times", seq, n)
		}
		return nil
	})
}

// storeFault makes the hub's store fail from outside the hub (fail) and heals it (heal).
type storeFault struct {
	fail, heal func(t *testing.T)
}

// ingestRefusedMQTT5: an MQTT 5 band publishes a valid QoS 1 sample while the store fails.
// The PUBACK carries 0x83 (implementation specific error), not success, the connection stays
// open, and the sample is not stored. Once the store is healed the band publishes the same
// seq again on the same connection: PUBACK success, the sample is stored exactly once and
// relayed to the phone once. A first sample, before the fault, shows the same path
// acknowledging success, so 0x83 is the store's doing and not a refusal of the sample.
func ingestRefusedMQTT5(t *testing.T, w *ingestWorld, band apiclient.Credentials, f storeFault) {
	d := dialDevice(t, w.mqttAddr, 5, band.DeviceID, band.Secret, true)
	d.publish(t, devices.StreamSteps, 1, false, stepsSample(1))
	if rc := d.nextPuback(t, 1); rc != 0x00 {
		t.Fatalf("healthy store: PUBACK reason %#x, want 0x00", rc)
	}

	f.fail(t)
	sample := stepsSample(2)
	d.publish(t, devices.StreamSteps, 2, false, sample)
	if rc := d.nextPuback(t, 2); rc != 0x83 {
		t.Fatalf("failing store: PUBACK reason %#x, want 0x83 (implementation specific error)", rc)
	}
	if n := w.storedSeqs(t, band.DeviceID); n[2] != 0 || n[1] != 1 {
		t.Fatalf("failing store: stored samples by seq %v, want only seq 1", n)
	}

	f.heal(t)
	d.publish(t, devices.StreamSteps, 3, false, sample)
	if rc := d.nextPuback(t, 3); rc != 0x00 {
		t.Fatalf("healed store: PUBACK reason %#x, want 0x00", rc)
	}
	if n := w.storedSeqs(t, band.DeviceID); n[2] != 1 || n[1] != 1 || len(n) != 2 {
		t.Fatalf("healed store: stored samples by seq %v, want seq 1 and 2 once each", n)
	}
	w.relayedOnce(t, band.DeviceID, 2)
	d.c.Close()
}

// ingestRefusedMQTT311: an MQTT 3.1.1 band (persistent session) publishes a valid QoS 1
// sample while the store fails. 3.1.1 cannot refuse a single publish, so the server closes
// the connection without a PUBACK, and the sample is not stored. Once the store is healed
// the band reconnects and resends the publish (same packet ID, DUP set), as a 3.1.1 client
// does with an unacknowledged message: PUBACK, and the sample is stored exactly once and
// relayed to the phone once.
func ingestRefusedMQTT311(t *testing.T, w *ingestWorld, band apiclient.Credentials, f storeFault) {
	d := dialDevice(t, w.mqttAddr, 4, band.DeviceID, band.Secret, false)
	d.publish(t, devices.StreamSteps, 1, false, stepsSample(1))
	if rc := d.nextPuback(t, 1); rc != 0x00 {
		t.Fatalf("healthy store: PUBACK %#x", rc)
	}

	f.fail(t)
	sample := stepsSample(2)
	d.publish(t, devices.StreamSteps, 2, false, sample)
	d.closedWithoutPuback(t)
	if n := w.storedSeqs(t, band.DeviceID); n[2] != 0 || n[1] != 1 {
		t.Fatalf("failing store: stored samples by seq %v, want only seq 1", n)
	}

	f.heal(t)
	w.waitClients(t, 1) // the phone only: the broker is done with the closed connection
	d = dialDevice(t, w.mqttAddr, 4, band.DeviceID, band.Secret, false)
	d.publish(t, devices.StreamSteps, 2, true, sample)
	if rc := d.nextPuback(t, 2); rc != 0x00 {
		t.Fatalf("resend: PUBACK %#x", rc)
	}
	if n := w.storedSeqs(t, band.DeviceID); n[2] != 1 || n[1] != 1 || len(n) != 2 {
		t.Fatalf("after the resend: stored samples by seq %v, want seq 1 and 2 once each", n)
	}
	w.relayedOnce(t, band.DeviceID, 2)
	d.c.Close()
}

// busyWorld is an in-process hub that waits only 200ms for a lock (so a blocked write fails
// soon), with one band, and the fault of another connection holding the write lock.
func busyWorld(t *testing.T) (*ingestWorld, storeFault) {
	t.Helper()
	h := apptest.Start(t, func(c *config.Config) { c.Store.BusyTimeout = 200 * time.Millisecond })
	w := newIngestWorld(t, h.URL(), h.MQTTAddr(), h.Config.Admin.Token, 1)
	var lock *writeLock
	return w, storeFault{
		fail: func(t *testing.T) { lock = holdWriteLock(t, h.Config.Store.Path) },
		heal: func(*testing.T) { lock.release() },
	}
}

// TestIngestStoreBusyMQTT5 is ingestRefusedMQTT5 with the store failing because another
// connection holds the database's write lock ("database is locked", SQLITE_BUSY).
func TestIngestStoreBusyMQTT5(t *testing.T) {
	w, f := busyWorld(t)
	ingestRefusedMQTT5(t, w, w.bands[0], f)
}

// TestIngestStoreBusyMQTT311 is ingestRefusedMQTT311 with the store failing because another
// connection holds the database's write lock ("database is locked", SQLITE_BUSY).
func TestIngestStoreBusyMQTT311(t *testing.T) {
	w, f := busyWorld(t)
	ingestRefusedMQTT311(t, w, w.bands[0], f)
}

// TestIngestStoreWriteError runs both scenarios against a hub in its own process whose
// writes the operating system refuses: prlimit(1), from outside, sets the hub process's
// RLIMIT_FSIZE to 0, so every write(2) to a file fails with EFBIG and SQLite fails the commit
// with a disk I/O error (SQLITE_IOERR_WRITE) when it writes the WAL. Unlike busy, which fails
// at BEGIN, this fails at COMMIT, after the insert ran. A full disk (ENOSPC, SQLITE_FULL)
// fails the same write(2) at the same place; it cannot be caused for one process without
// privileges (a small file system has to be mounted), so this stands for it. Linux only.
func TestIngestStoreWriteError(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the hub and runs it as its own process")
	}
	prlimit, err := exec.LookPath("prlimit")
	if runtime.GOOS != "linux" || err != nil {
		t.Skip("needs Linux and prlimit(1) (util-linux)")
	}
	bin := apptest.BuildBinary(t)
	p := apptest.StartProcess(t, bin, t.TempDir())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub logs:\n%s", p.Logs())
		}
	})
	pid := processOf(t, bin)
	fsize := func(limit string) error {
		out, err := exec.Command(prlimit, "--pid", strconv.Itoa(pid), "--fsize="+limit+":").CombinedOutput()
		if err != nil {
			return fmt.Errorf("prlimit --fsize=%s: %v: %s", limit, err, out)
		}
		return nil
	}
	f := storeFault{
		fail: func(t *testing.T) {
			if err := fsize("0"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = fsize("unlimited") })
		},
		heal: func(t *testing.T) {
			if err := fsize("unlimited"); err != nil {
				t.Fatal(err)
			}
		},
	}
	w := newIngestWorld(t, "http://"+p.HTTPAddr, p.MQTTAddr, "test-admin-token", 2)
	t.Run("mqtt5", func(t *testing.T) { ingestRefusedMQTT5(t, w, w.bands[0], f) })
	t.Run("mqtt311", func(t *testing.T) { ingestRefusedMQTT311(t, w, w.bands[1], f) })
	if !strings.Contains(p.Logs(), "disk I/O error") {
		t.Errorf("the hub never logged a disk I/O error: the fault did not reach the store")
	}
}

// processOf finds the PID of the one running process of executable bin.
func processOf(t *testing.T, bin string) int {
	t.Helper()
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == want {
			return pid
		}
	}
	t.Fatalf("no process runs %s", bin)
	return 0
}
