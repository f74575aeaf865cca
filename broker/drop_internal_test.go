package broker

import (
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
)

// TestOverlappingDropsShareTheirWakeUps: a connection dropped twice at once (unbound, then
// bound again before the first drop ended) has one wake-up for both. When the first drop
// ends, the second still wakes on the device's acknowledgement and ends then, instead of
// waiting for its limit. The first end used to delete the shared wake-up, and the second drop
// then waited its full 10 s.
func TestOverlappingDropsShareTheirWakeUps(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{})
	cl := srv.NewClient(nil, "t", "dev_band", false)
	h := newDropHook()
	notice := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: devices.CommandTopic(cl.ID), PacketID: 1, Created: time.Now().Unix()}
	cl.State.Inflight.Set(notice)

	endFirst := h.start(cl.ID, cl)
	endSecond := h.start(cl.ID, cl)
	defer endSecond()
	endFirst()

	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		h.flush(cl, time.Hour) // only the acknowledgement can end it within the test
	}()
	select {
	case <-flushed:
		t.Fatal("the second drop's flush ended while the notice was unacknowledged")
	case <-time.After(200 * time.Millisecond): // waiting, as it should
	}
	// The device acknowledges the notice: mochi deletes it and calls OnQosComplete.
	cl.State.Inflight.Delete(notice.PacketID)
	h.OnQosComplete(cl, notice)
	select {
	case <-flushed:
	case <-time.After(time.Minute): // turns a hang into a failure
		t.Fatal("the second drop's flush did not wake on the acknowledgement after the first drop ended")
	}
}
