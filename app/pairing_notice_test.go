package app_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/devicehub/devicehub/devices"
)

// commandsOf returns the commands of typ the device received so far.
func (r *rawDev) commandsOf(typ string) []devices.Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []devices.Command
	for _, c := range r.commands {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

// settle makes a request and waits for its answer: the hub sends what a SUBSCRIBE triggers
// before it reads the next packet, so once the answer is in, anything due is in too.
func (r *rawDev) settle(t *testing.T) {
	t.Helper()
	if _, err := r.request(t, devices.OpSettingsGet, devices.SettingsGetArgs{DeviceID: r.id}); err != nil {
		t.Fatalf("settle: %v", err)
	}
}

// TestPairingNoticesReachOfflineDevices: the band pairs with Anna's phone while the phone
// is offline; the phone, reconnecting with a clean session, gets the same link key, until it
// acknowledges it. The phone unpairs while the band is offline; the band gets "unpaired" on
// reconnect (and no longer the link key it never acknowledged).
func TestPairingNoticesReachOfflineDevices(t *testing.T) {
	w := newWorld(t)
	creds, bandSecret, bound := w.bindBand(t)
	bound.Close()
	w.waitOffline(t, creds.DeviceID)
	w.waitOffline(t, w.annaPhone.DeviceID)
	// The phone is offline from here on until it reconnects below.
	phone := &rawDev{id: w.annaPhone.DeviceID}
	band := connectRaw(t, w.h.MQTTURL(), creds.DeviceID, bandSecret, false)

	if _, err := band.request(t, devices.OpPair, devices.PairArgs{DeviceID: phone.id}); err != nil {
		t.Fatalf("band asks to pair: %v", err)
	}
	var bandArgs devices.PairedArgs
	if err := json.Unmarshal(band.command(t, devices.CmdPaired, 1).Args, &bandArgs); err != nil || bandArgs.PeerID != phone.id {
		t.Fatalf("band's paired notice: %+v, %v", bandArgs, err)
	}

	phone = connectRaw(t, w.h.MQTTURL(), phone.id, w.annaPhone.Secret, true)
	cmd := phone.command(t, devices.CmdPaired, 1)
	var a devices.PairedArgs
	if err := json.Unmarshal(cmd.Args, &a); err != nil || a.Validate() != nil {
		t.Fatalf("phone's paired notice %s: %v", cmd.Args, err)
	}
	if a.PeerID != band.id || !bytes.Equal(a.LinkKey, bandArgs.LinkKey) {
		t.Fatalf("phone got peer %s and a different key; want the band %s and the band's key", a.PeerID, band.id)
	}
	if _, err := phone.request(t, devices.OpCommandAck, devices.CommandAckArgs{CommandID: cmd.ID, Status: devices.AckAcknowledged}); err != nil {
		t.Fatalf("ack: %v", err)
	}
	phone.close()
	w.waitOffline(t, phone.id)
	phone = connectRaw(t, w.h.MQTTURL(), phone.id, w.annaPhone.Secret, true)
	phone.settle(t)
	if got := phone.commandsOf(devices.CmdPaired); len(got) != 0 {
		t.Fatalf("acknowledged link key sent again: %+v", got)
	}

	band.close()
	w.waitOffline(t, band.id)
	if _, err := phone.request(t, devices.OpUnpair, devices.PairArgs{DeviceID: band.id}); err != nil {
		t.Fatalf("unpair: %v", err)
	}
	band = connectRaw(t, w.h.MQTTURL(), band.id, bandSecret, false)
	un := band.command(t, devices.CmdUnpaired, 1)
	var ua devices.UnpairedArgs
	if err := json.Unmarshal(un.Args, &ua); err != nil || ua.PeerID != phone.id {
		t.Fatalf("band's unpaired notice %s: %v", un.Args, err)
	}
	band.settle(t)
	if got := band.commandsOf(devices.CmdPaired); len(got) != 0 {
		t.Fatalf("band got the ended pairing's link key again: %+v", got)
	}
}
