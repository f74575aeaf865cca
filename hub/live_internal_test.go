package hub

import (
	"fmt"
	"testing"

	"github.com/devicehub/devicehub/devices"
)

// TestGoLiveSkipsWhatTheReadSent: a commit whose hook ran while the relay was reading the
// log can also be in what that read returned (the read's snapshot began after the commit,
// the hook ran later). Going live keeps only what the read did not send, and an entry
// offered again later is not queued twice. The race is too narrow to hit reliably through
// the public API (TestRelayUnderConcurrentIngest covers the rest), so this drives the steps.
func TestGoLiveSkipsWhatTheReadSent(t *testing.T) {
	s := &SyncSession{id: devices.Identity{DeviceID: "dev_phone", AccountID: "acc_a", Type: devices.Phone},
		window: 10, wake: make(chan struct{}, 1)}
	rec := func(c int64, dev string) SyncRecord { return SyncRecord{Cursor: c, AccountID: "acc_a", DeviceID: dev} }
	s.live.pairs = map[string]bool{"dev_band": true}
	s.live.arming = true
	for _, r := range []SyncRecord{rec(5, "dev_band"), rec(6, "dev_other"), rec(7, "dev_band"), rec(8, "dev_phone"), rec(9, "dev_band")} {
		s.offer(r)
	}
	s.goLive(7) // the read sent 5 and 7
	s.offer(rec(9, "dev_band"))
	s.offer(rec(10, "dev_band"))
	var got []int64
	for _, r := range s.live.tail {
		got = append(got, r.Cursor)
	}
	if fmt.Sprint(got) != "[9 10]" || !s.live.on {
		t.Fatalf("live %v with tail %v, want on with [9 10]", s.live.on, got)
	}
}
