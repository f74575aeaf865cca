package app_test

import (
	"testing"

	"github.com/devicehub/devicehub/devices"
)

// TestRelayEntitlement: a band's entries reach every controller paired with it (a phone and
// a tablet) and no other controller of the account; a phone's own account-wide entries
// (location) reach every other controller of the account and not the phone itself.
func TestRelayEntitlement(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	creds, bandSecret, bound := w.bindBand(t)
	bound.Close()
	w.waitOffline(t, creds.DeviceID)
	w.waitOffline(t, w.annaPhone.DeviceID)
	tabletCreds, err := w.anna.RegisterDevice(ctx, "tablet", "Anna's tablet", "")
	if err != nil {
		t.Fatal(err)
	}
	otherCreds, err := w.anna.RegisterDevice(ctx, "phone", "Anna's work phone", "")
	if err != nil {
		t.Fatal(err)
	}
	url := w.h.MQTTURL()
	phone := connectRaw(t, url, w.annaPhone.DeviceID, w.annaPhone.Secret, true)
	tablet := connectRaw(t, url, tabletCreds.DeviceID, tabletCreds.Secret, true)
	other := connectRaw(t, url, otherCreds.DeviceID, otherCreds.Secret, true)
	band := connectRaw(t, url, creds.DeviceID, bandSecret, false)
	pair(t, phone, band, 1)
	if _, err := tablet.request(t, devices.OpPair, devices.PairArgs{DeviceID: band.id}); err != nil {
		t.Fatalf("pair the tablet: %v", err)
	}
	tablet.command(t, devices.CmdPaired, 1)
	band.command(t, devices.CmdPaired, 2)

	for seq := uint64(1); seq <= 3; seq++ {
		band.telemetry(t, devices.StreamSteps, seq, `"count":10`)
	}
	phone.telemetry(t, devices.StreamLocation, 1, `"lat":52.5,"lon":13.4,"accuracy_m":10`)

	for name, c := range map[string]*rawDev{"phone": phone, "tablet": tablet} {
		es := c.waitFor(t, 3)
		checkOrdered(t, es)
		for _, e := range es[:3] {
			if e.Device != band.id || e.Stream != devices.StreamSteps {
				t.Fatalf("%s got %+v, want the band's steps first", name, e)
			}
		}
	}
	// The tablet and the unpaired phone get the phone's location; being last in commit
	// order, it also shows that nothing of the band is still on its way to the other phone.
	for name, c := range map[string]*rawDev{"tablet": tablet, "work phone": other} {
		es := c.waitFor(t, map[string]int{"tablet": 4, "work phone": 1}[name])
		last := es[len(es)-1]
		if last.Device != phone.id || last.Stream != devices.StreamLocation {
			t.Fatalf("%s: last entry %+v, want the phone's location", name, last)
		}
	}
	for _, e := range other.snapshot() {
		if e.Device == band.id {
			t.Fatalf("a controller not paired with the band got its entry %+v", e)
		}
	}
	for _, e := range phone.snapshot() {
		if e.Device == phone.id {
			t.Fatalf("the phone got its own entry back: %+v", e)
		}
	}
}
