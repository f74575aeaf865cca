package app_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/devices"
)

// quietFor is how long a connection is watched to show the hub sends it nothing. A hub that
// kept reading would answer the PINGREQ in well under a millisecond; a slower machine can
// only make the check pass, never fail it.
const quietFor = 500 * time.Millisecond

// TestMaxUnackedPublishesStopsReading proves broker.max_unacked_publishes is backpressure:
// while the store cannot commit (another connection holds SQLite's write lock; the hub's
// busy timeout is long enough to wait it out), a band with that many QoS 1 publishes
// waiting for their commit is not read any further, so its PINGREQ gets no answer; a band
// under the limit on the same hub is still read and answered at once. Once the store
// commits again, every publish is acknowledged in order, the held-back PINGREQ is answered,
// and each sample is stored once.
func TestMaxUnackedPublishesStopsReading(t *testing.T) {
	const limit = 4
	h := apptest.Start(t, func(c *config.Config) {
		c.Broker.MaxUnackedPublishes = limit
		c.Store.BusyTimeout = 30 * time.Second
	})
	w := newIngestWorld(t, h.URL(), h.MQTTAddr(), h.Config.Admin.Token, 2)
	under := dialDevice(t, w.mqttAddr, 4, w.bands[0].DeviceID, w.bands[0].Secret, true)
	over := dialDevice(t, w.mqttAddr, 4, w.bands[1].DeviceID, w.bands[1].Secret, true)

	lock := holdWriteLock(t, h.Config.Store.Path)
	pingreq := []byte{0xc0, 0}

	// Under the limit: two publishes wait for their commit, the ping is still answered.
	for seq := uint16(1); seq <= 2; seq++ {
		under.publish(t, devices.StreamSteps, seq, false, stepsSample(uint64(seq)))
	}
	if _, err := under.c.Write(pingreq); err != nil {
		t.Fatal(err)
	}
	if hdr, body := nextPacket(t, under, ingestHangGuard); hdr != 0xd0 {
		t.Fatalf("band under the limit: got %#x % x before its PINGRESP (nothing can be committed yet)", hdr, body)
	}

	// Over the limit: the fifth publish is not read, nor anything after it.
	const sent = 2 * limit
	for seq := uint16(1); seq <= sent; seq++ {
		over.publish(t, devices.StreamSteps, seq, false, stepsSample(uint64(seq)))
	}
	if _, err := over.c.Write(pingreq); err != nil {
		t.Fatal(err)
	}
	if hdr, body, ok := packetWithin(t, over, quietFor); ok {
		t.Fatalf("band over the limit got %#x % x while %d publishes waited for their commit: the hub kept reading it", hdr, body, limit)
	}

	lock.release()
	for seq := uint16(1); seq <= 2; seq++ {
		if rc := under.nextPuback(t, seq); rc != 0 {
			t.Fatalf("band under the limit: PUBACK %d reason %#x", seq, rc)
		}
	}
	next, pinged := uint16(1), false
	for next <= sent || !pinged {
		hdr, body := nextPacket(t, over, ingestHangGuard)
		switch {
		case hdr == 0xd0:
			pinged = true
		case hdr>>4 == 4 && len(body) >= 2:
			if pid := uint16(body[0])<<8 | uint16(body[1]); pid != next {
				t.Fatalf("PUBACK for packet %d, want %d (in order)", pid, next)
			}
			next++
		default:
			t.Logf("skipped packet %#x % x", hdr, body)
		}
	}
	for i, band := range w.bands {
		want := map[int]uint64{0: 2, 1: sent}[i]
		n := w.storedSeqs(t, band.DeviceID)
		for seq := uint64(1); seq <= want; seq++ {
			if n[seq] != 1 {
				t.Fatalf("band %d: stored samples by seq %v, want 1..%d once each", i, n, want)
			}
		}
		if len(n) != int(want) {
			t.Fatalf("band %d: stored samples by seq %v, want 1..%d once each", i, n, want)
		}
	}
}

// nextPacket reads the device's next packet, failing the test if none comes within d.
func nextPacket(t *testing.T, d *mqttDevice, within time.Duration) (byte, []byte) {
	t.Helper()
	hdr, body, ok := packetWithin(t, d, within)
	if !ok {
		t.Fatalf("no packet from the hub within %v", within)
	}
	return hdr, body
}

// packetWithin reads the device's next packet if one comes within d.
func packetWithin(t *testing.T, d *mqttDevice, within time.Duration) (byte, []byte, bool) {
	t.Helper()
	_ = d.c.SetReadDeadline(time.Now().Add(within))
	defer d.c.SetReadDeadline(time.Now().Add(ingestHangGuard))
	hdr, body, err := ingReadPacket(d.c)
	var ne net.Error
	if err != nil && ((errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded)) {
		return 0, nil, false
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return hdr, body, true
}
