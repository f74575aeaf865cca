package devices

import (
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// ReasonLostMode is the Refusal reason of what a phone in lost mode will not do.
const ReasonLostMode = "lost_mode"

// DefaultReportInterval is how often a phone in lost mode reports its location when the lock
// command does not say.
const DefaultReportInterval = 5 * time.Minute

// maxSeenCommands bounds how many command IDs a PhoneModel remembers to recognise repeats.
const maxSeenCommands = 256

// PhoneModel is the device side of lost mode, as a phone app would implement it, without any
// MQTT: it applies owner commands, refuses calls to anyone but the contact number and
// refuses to sign out while locked. It never holds or checks the account password: leaving
// lost mode takes an unlock command from the hub, or the hub's yes to the password typed on
// the phone (the "unlock" op). A package devices/phonesim ties it to a client.
//
// Its methods are safe for concurrent use.
type PhoneModel struct {
	mu       sync.Mutex
	lost     *PhoneLostMode
	wipes    int
	rings    int
	locates  int
	data     map[string]string
	seen     map[string]CommandOutcome
	seenList []string
	settings *SettingsModel
	linkKeys map[string][]byte // peer device ID → the link key of their pairing
}

// PhoneLostMode is what a phone in lost mode shows and allows.
type PhoneLostMode struct {
	Message        string
	ContactNumber  string
	ReportInterval time.Duration
}

// CommandOutcome says what the phone made of a command and what to tell the hub.
type CommandOutcome struct {
	// Ack is true when the command must be acknowledged with Status and Detail.
	Ack    bool
	Status string // AckAcknowledged or AckFailed
	Detail string
	// Repeat is true when the phone had already carried out this command ID (the hub sends
	// open commands again on reconnect); it is acknowledged again and not re-applied.
	Repeat bool
	// ReportLocation is true when the phone should send a location sample now.
	ReportLocation bool
	// Report, when set, is the settings_report to send after the acknowledgement: what the
	// phone holds after a "settings" command (its own settings, or the account profile).
	Report *SettingsReportArgs
}

// NewPhoneModel returns an unlocked phone with no data.
func NewPhoneModel() *PhoneModel {
	return &PhoneModel{data: map[string]string{}, seen: map[string]CommandOutcome{}, settings: NewSettingsModel(), linkKeys: map[string][]byte{}}
}

// Settings is the phone's settings and account profile, as applied from "settings" commands.
func (p *PhoneModel) Settings() *SettingsModel { return p.settings }

// HandleCommand applies a command from the hub. Owner commands, "settings" and the pairing
// notices ("paired" keeps the link key, "unpaired" forgets it) are acknowledged (a settings
// command also yields the settings_report to send); the hub sends a pairing notice again
// on every reconnect until it is acknowledged. Other events (bound, unbound) are not the
// phone model's business: their outcome has Ack false.
func (p *PhoneModel) HandleCommand(cmd Command) CommandOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	if out, ok := p.seen[cmd.ID]; ok && cmd.ID != "" {
		out.Repeat, out.ReportLocation = true, false
		return out
	}
	out := p.apply(cmd)
	if out.Ack && cmd.ID != "" {
		p.remember(cmd.ID, out)
	}
	return out
}

func (p *PhoneModel) apply(cmd Command) CommandOutcome {
	ok := CommandOutcome{Ack: true, Status: AckAcknowledged}
	switch cmd.Type {
	case CmdLock:
		var a LockArgs
		if len(cmd.Args) > 0 {
			if err := json.Unmarshal(cmd.Args, &a); err != nil {
				return CommandOutcome{Ack: true, Status: AckFailed, Detail: "lock args: " + err.Error()}
			}
		}
		interval := DefaultReportInterval
		if a.ReportIntervalS > 0 {
			interval = time.Duration(a.ReportIntervalS) * time.Second
		}
		p.lost = &PhoneLostMode{Message: a.Message, ContactNumber: normalizeNumber(a.ContactNumber), ReportInterval: interval}
		ok.ReportLocation = true // the owner wants to see where it is at once
		ok.Detail = "locked"
	case CmdUnlock:
		p.lost = nil
		ok.Detail = "unlocked"
	case CmdWipe:
		// The data goes; the binding and lost mode stay (they are the hub's, and activation
		// lock holds across a wipe).
		p.data = map[string]string{}
		p.wipes++
		ok.Detail = "wiped"
	case CmdRing:
		p.rings++
		ok.Detail = "rang"
	case CmdLocate:
		p.locates++
		ok.ReportLocation = true
		ok.Detail = "location sent"
	case CmdSettings:
		rep, err := p.settings.Apply(cmd)
		if err != nil {
			return CommandOutcome{Ack: true, Status: AckFailed, Detail: clip(err.Error(), 256)}
		}
		ok.Report = &rep
		ok.Detail = "settings applied"
		if rep.Doc == DocProfile {
			ok.Detail = "profile applied"
		}
	case CmdPaired:
		var a PairedArgs
		if err := json.Unmarshal(cmd.Args, &a); err != nil || a.Validate() != nil {
			return CommandOutcome{Ack: true, Status: AckFailed, Detail: "paired args are not valid"}
		}
		p.linkKeys[a.PeerID] = a.LinkKey
		ok.Detail = "link key kept"
	case CmdUnpaired:
		var a UnpairedArgs
		if err := json.Unmarshal(cmd.Args, &a); err != nil || ValidIdentifier(a.PeerID) != nil {
			return CommandOutcome{Ack: true, Status: AckFailed, Detail: "unpaired args are not valid"}
		}
		delete(p.linkKeys, a.PeerID)
		ok.Detail = "link key forgotten"
	default:
		return CommandOutcome{}
	}
	return ok
}

// LinkKey returns the link key of the phone's pairing with peer, if it is paired with it.
func (p *PhoneModel) LinkKey(peer string) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.linkKeys[peer]
	return append([]byte(nil), k...), ok
}

func (p *PhoneModel) remember(id string, out CommandOutcome) {
	out.ReportLocation = false
	p.seen[id] = out
	p.seenList = append(p.seenList, id)
	if len(p.seenList) > maxSeenCommands {
		delete(p.seen, p.seenList[0])
		p.seenList = p.seenList[1:]
	}
}

// Dial places a call. In lost mode only the contact number may be called (and emergency
// numbers, which no phone may block); anything else is refused with a *Refusal whose reason
// is ReasonLostMode.
func (p *PhoneModel) Dial(number string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lost == nil {
		return nil
	}
	n := normalizeNumber(number)
	if n != "" && (n == p.lost.ContactNumber || emergencyNumber(n)) {
		return nil
	}
	if p.lost.ContactNumber == "" {
		return refuse(ReasonLostMode, "this phone is in lost mode: only emergency calls are allowed")
	}
	return refuse(ReasonLostMode, "this phone is in lost mode: only %s may be called", p.lost.ContactNumber)
}

// SignOut asks to leave the account. A phone in lost mode refuses (the hub refuses too,
// whatever the phone says): unlock it first.
func (p *PhoneModel) SignOut() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lost != nil {
		return refuse(ReasonLostMode, "this phone is in lost mode: unlock it with the account password before signing out")
	}
	return nil
}

// PasswordAccepted leaves lost mode after the hub accepted the account password typed on the
// phone (the "unlock" op answered ok). The hub's unlock command follows and is a repeat.
func (p *PhoneModel) PasswordAccepted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lost = nil
}

// LostMode returns the phone's lost mode, or nil when it is not locked.
func (p *PhoneModel) LostMode() *PhoneLostMode {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lost == nil {
		return nil
	}
	lm := *p.lost
	return &lm
}

// Locked reports whether the phone is in lost mode.
func (p *PhoneModel) Locked() bool { return p.LostMode() != nil }

// ReportInterval is how often to report the location: 0 when not in lost mode.
func (p *PhoneModel) ReportInterval() time.Duration {
	if lm := p.LostMode(); lm != nil {
		return lm.ReportInterval
	}
	return 0
}

// Put stores a piece of the owner's data on the phone (what a wipe erases).
func (p *PhoneModel) Put(key, value string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.data[key] = value
}

// Get reads the owner's data.
func (p *PhoneModel) Get(key string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.data[key]
	return v, ok
}

// Counts reports how many times the phone was wiped, rang and was asked to locate itself.
func (p *PhoneModel) Counts() (wipes, rings, locates int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wipes, p.rings, p.locates
}

// normalizeNumber keeps the digits of a dialled number (and a leading +, which 00 also
// means), so "+1 (555) 123-4567" and "+15551234567" are the same number.
func normalizeNumber(s string) string {
	s = strings.TrimSpace(s)
	plus := strings.HasPrefix(s, "+")
	if strings.HasPrefix(s, "00") {
		plus, s = true, s[2:]
	}
	var b strings.Builder
	if plus {
		b.WriteByte('+')
	}
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 || b.String() == "+" {
		return ""
	}
	return b.String()
}

// clip keeps an acknowledgement's detail within what command_ack accepts.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func emergencyNumber(n string) bool {
	switch n {
	case "112", "911", "999", "000", "110", "119":
		return true
	}
	return false
}
