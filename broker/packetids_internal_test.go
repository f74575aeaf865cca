package broker

import (
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestReservationSurvivesTheExpirySweep: a request's reserved packet ID stays reserved
// through mochi's sweep of expired in-flight messages, so the hub's answer never takes it.
// The reservation used to carry no creation time, which the sweep reads as older than any
// expiry: TestUnbindOverMQTT lost a phone's answer about once in forty runs under load.
func TestReservationSurvivesTheExpirySweep(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{})
	cl := srv.NewClient(nil, "t", "phone", false)
	h := newPacketIDHook(slog.New(slog.DiscardHandler), srv)
	const requestID = 1
	h.reserve(cl, requestID)
	cl.ClearExpiredInflights(time.Now().Unix(), srv.Options.Capabilities.MaximumMessageExpiryInterval)
	if _, ok := cl.State.Inflight.Get(requestID); !ok {
		t.Fatal("the expiry sweep deleted the request's reservation")
	}
	if id, err := cl.NextPacketID(); err != nil || id == requestID {
		t.Fatalf("the hub's next message got packet ID %d (%v); the request has %d", id, err, requestID)
	}
}
