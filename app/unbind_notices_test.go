package app_test

import (
	"database/sql"
	"encoding/json"
	"testing"

	"github.com/devicehub/devicehub/devices"
)

// TestUnbindTellsPeersAndForgetsItsNotices: a band paired with Anna's phone while the phone
// was offline, so a "paired" notice with the link key waits for the phone, and the band has
// not acknowledged its own. Anna unbinds the band while both are offline. The phone, when it
// comes back with a clean session, is told "unpaired" about the band and never gets the link
// key; the band's pending notices (its copy of the key among them) are gone from the store.
func TestUnbindTellsPeersAndForgetsItsNotices(t *testing.T) {
	w := newWorld(t)
	creds, bandSecret, bound := w.bindBand(t)
	bound.Close()
	w.waitOffline(t, creds.DeviceID)
	w.waitOffline(t, w.annaPhone.DeviceID)
	band := connectRaw(t, w.h.MQTTURL(), creds.DeviceID, bandSecret, false)
	if _, err := band.request(t, devices.OpPair, devices.PairArgs{DeviceID: w.annaPhone.DeviceID}); err != nil {
		t.Fatalf("band asks to pair: %v", err)
	}
	band.command(t, devices.CmdPaired, 1) // received, not acknowledged
	band.close()
	w.waitOffline(t, band.id)

	db, err := sql.Open("sqlite3", "file:"+w.h.Config.Store.Path+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pending := func(deviceID string) (n int) {
		t.Helper()
		if err := db.QueryRow(`SELECT COUNT(*) FROM pairing_notices WHERE device_id = ?`, deviceID).Scan(&n); err != nil {
			t.Fatalf("read pairing notices: %v", err)
		}
		return n
	}
	if pending(band.id) != 1 || pending(w.annaPhone.DeviceID) != 1 {
		t.Fatalf("before the unbind: band has %d pending notices, phone %d; want 1 each", pending(band.id), pending(w.annaPhone.DeviceID))
	}

	if err := w.anna.Unbind(testCtx(t), band.id, w.annaPassword); err != nil {
		t.Fatalf("unbind: %v", err)
	}
	if n := pending(band.id); n != 0 {
		t.Fatalf("the unbound band still has %d pending notices (its link key among them)", n)
	}

	phone := connectRaw(t, w.h.MQTTURL(), w.annaPhone.DeviceID, w.annaPhone.Secret, true)
	un := phone.command(t, devices.CmdUnpaired, 1)
	var ua devices.UnpairedArgs
	if err := json.Unmarshal(un.Args, &ua); err != nil || ua.PeerID != band.id {
		t.Fatalf("phone's unpaired notice %s: %v; want peer %s", un.Args, err, band.id)
	}
	phone.settle(t)
	if got := phone.commandsOf(devices.CmdPaired); len(got) != 0 {
		t.Fatalf("phone got the link key of a pairing that ended with the unbind: %+v", got)
	}
}
