package devices

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func lockCmd(t *testing.T, id string, a LockArgs) Command {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return Command{ID: id, Type: CmdLock, Args: b}
}

func TestPhoneLostMode(t *testing.T) {
	p := NewPhoneModel()
	if err := p.Dial("+15550000000"); err != nil {
		t.Fatalf("unlocked phone refused a call: %v", err)
	}
	if err := p.SignOut(); err != nil {
		t.Fatalf("unlocked phone refused to sign out: %v", err)
	}
	if p.ReportInterval() != 0 {
		t.Fatal("unlocked phone reports its location")
	}

	out := p.HandleCommand(lockCmd(t, "c1", LockArgs{Message: "Lost, please call", ContactNumber: "+14155552671", ReportIntervalS: 30}))
	if !out.Ack || out.Status != AckAcknowledged || !out.ReportLocation {
		t.Fatalf("lock outcome %+v", out)
	}
	lm := p.LostMode()
	if lm == nil || lm.Message != "Lost, please call" || lm.ContactNumber != "+14155552671" || lm.ReportInterval != 30*time.Second {
		t.Fatalf("lost mode %+v", lm)
	}

	for _, n := range []string{"+14155552671", "+1 (415) 555-2671", "0014155552671", "112", "911"} {
		if err := p.Dial(n); err != nil {
			t.Errorf("Dial(%q) in lost mode: %v, want allowed", n, err)
		}
	}
	for _, n := range []string{"+15550000000", "", "+", "4155552671"} {
		err := p.Dial(n)
		if !errors.Is(err, &Refusal{Reason: ReasonLostMode}) {
			t.Errorf("Dial(%q) in lost mode: %v, want a lost_mode refusal", n, err)
		}
	}
	if err := p.SignOut(); RefusalReason(err) != ReasonLostMode {
		t.Fatalf("sign out while locked: %v", err)
	}

	// A repeated lock (the hub sends open commands again) is acknowledged, not re-applied.
	if out := p.HandleCommand(lockCmd(t, "c1", LockArgs{ContactNumber: "+15550000000"})); !out.Repeat || !out.Ack || out.ReportLocation {
		t.Fatalf("repeat outcome %+v", out)
	}
	if p.LostMode().ContactNumber != "+14155552671" {
		t.Fatal("a repeated command was applied again")
	}

	// A wipe erases data and keeps lost mode.
	p.Put("photos", "42")
	if out := p.HandleCommand(Command{ID: "c2", Type: CmdWipe}); out.Status != AckAcknowledged {
		t.Fatalf("wipe outcome %+v", out)
	}
	if _, ok := p.Get("photos"); ok || !p.Locked() {
		t.Fatal("wipe kept data or left lost mode")
	}

	if out := p.HandleCommand(Command{ID: "c3", Type: CmdUnlock}); out.Status != AckAcknowledged || p.Locked() {
		t.Fatalf("unlock outcome %+v, locked %v", out, p.Locked())
	}
	if err := p.Dial("+15550000000"); err != nil {
		t.Fatalf("unlocked phone refused a call: %v", err)
	}
	if err := p.SignOut(); err != nil {
		t.Fatal(err)
	}
}

func TestPhonePasswordAndOtherCommands(t *testing.T) {
	p := NewPhoneModel()
	p.HandleCommand(lockCmd(t, "l", LockArgs{ContactNumber: "+14155552671"}))
	if p.ReportInterval() != DefaultReportInterval {
		t.Fatalf("default interval %v", p.ReportInterval())
	}
	p.PasswordAccepted()
	if p.Locked() {
		t.Fatal("still locked after the hub accepted the password")
	}
	if out := p.HandleCommand(Command{ID: "r", Type: CmdRing}); out.Status != AckAcknowledged {
		t.Fatalf("ring %+v", out)
	}
	if out := p.HandleCommand(Command{ID: "x", Type: CmdLocate}); !out.ReportLocation {
		t.Fatalf("locate %+v", out)
	}
	if out := p.HandleCommand(Command{ID: "b", Type: CmdBound}); out.Ack {
		t.Fatalf("an event was acknowledged: %+v", out)
	}
	if out := p.HandleCommand(Command{ID: "bad", Type: CmdLock, Args: json.RawMessage(`[1]`)}); out.Status != AckFailed {
		t.Fatalf("bad lock args %+v", out)
	}
	if w, r, l := p.Counts(); w != 0 || r != 1 || l != 1 {
		t.Fatalf("counts %d %d %d", w, r, l)
	}
	// Phones remember a bounded number of command IDs.
	for i := range maxSeenCommands * 2 {
		p.HandleCommand(Command{ID: time.Duration(i).String(), Type: CmdRing})
	}
	if len(p.seen) > maxSeenCommands || len(p.seenList) > maxSeenCommands {
		t.Fatalf("remembers %d IDs", len(p.seen))
	}
}

// TestPhoneKeepsLinkKeys: "paired" is acknowledged and its link key kept per peer, a
// repeat (the hub resends until acknowledged) is acknowledged again, and "unpaired" forgets
// the key.
func TestPhoneKeepsLinkKeys(t *testing.T) {
	p := NewPhoneModel()
	key := bytes.Repeat([]byte{7}, LinkKeySize)
	args, _ := json.Marshal(PairedArgs{PeerID: "dev_band", LinkKey: key})
	paired := Command{ID: "cmd_p", Type: CmdPaired, Args: args}
	if out := p.HandleCommand(paired); !out.Ack || out.Status != AckAcknowledged {
		t.Fatalf("paired: %+v", out)
	}
	if k, ok := p.LinkKey("dev_band"); !ok || !bytes.Equal(k, key) {
		t.Fatalf("link key %x %v", k, ok)
	}
	if out := p.HandleCommand(paired); !out.Ack || !out.Repeat {
		t.Fatalf("paired again: %+v", out)
	}
	if out := p.HandleCommand(Command{ID: "cmd_bad", Type: CmdPaired, Args: json.RawMessage(`{"peer_id":"dev_band","link_key":"c2hvcnQ="}`)}); out.Status != AckFailed {
		t.Fatalf("a short link key: %+v", out)
	}
	un, _ := json.Marshal(UnpairedArgs{PeerID: "dev_band"})
	if out := p.HandleCommand(Command{ID: "cmd_u", Type: CmdUnpaired, Args: un}); out.Status != AckAcknowledged {
		t.Fatalf("unpaired: %+v", out)
	}
	if _, ok := p.LinkKey("dev_band"); ok {
		t.Fatal("link key kept after unpaired")
	}
}
