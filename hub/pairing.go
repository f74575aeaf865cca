package hub

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"slices"

	"github.com/devicehub/devicehub/devices"
)

// Pair pairs the sender with peerID: one must be a controller and the other a pairable
// gadget, both bound to the sender's account. Both sides receive a "paired" command with a
// fresh 32-byte link key. Refusals say only what the sender may know: a device of another
// account and a device that does not exist are both not_same_account.
func (h *Hub) Pair(ctx context.Context, id devices.Identity, peerID string) error {
	ctrl, gadget, err := h.pairSides(ctx, id, peerID)
	if err != nil {
		return err
	}
	key := make([]byte, devices.LinkKeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("link key: %w", err)
	}
	now := h.clock.Now()
	notices := []PairingNotice{
		{ID: NewID("cmd"), DeviceID: ctrl, PeerID: gadget, Type: devices.CmdPaired, LinkKey: key, CreatedAt: now},
		{ID: NewID("cmd"), DeviceID: gadget, PeerID: ctrl, Type: devices.CmdPaired, LinkKey: key, CreatedAt: now},
	}
	if err := h.sync.store.CreatePairing(ctx, Pairing{ControllerID: ctrl, GadgetID: gadget, AccountID: id.AccountID, CreatedAt: now}, notices...); err != nil {
		return err
	}
	h.pairingChanged([]string{ctrl}, gadget)
	h.sendNotices(ctx, notices)
	h.audit(ctx, AuditEntry{AccountID: id.AccountID, DeviceID: gadget, Event: "pair", Detail: "with " + ctrl, Actor: id.DeviceID})
	return nil
}

// Unpair ends the pairing of the sender and peerID; both sides receive "unpaired".
func (h *Hub) Unpair(ctx context.Context, id devices.Identity, peerID string) error {
	ctrl, gadget, err := h.pairSides(ctx, id, peerID)
	if err != nil {
		return err
	}
	now := h.clock.Now()
	notices := []PairingNotice{
		{ID: NewID("cmd"), DeviceID: ctrl, PeerID: gadget, Type: devices.CmdUnpaired, CreatedAt: now},
		{ID: NewID("cmd"), DeviceID: gadget, PeerID: ctrl, Type: devices.CmdUnpaired, CreatedAt: now},
	}
	if err := h.sync.store.DeletePairing(ctx, ctrl, gadget, notices...); err != nil {
		return err
	}
	h.pairingChanged([]string{ctrl}, gadget)
	h.sendNotices(ctx, notices)
	h.audit(ctx, AuditEntry{AccountID: id.AccountID, DeviceID: gadget, Event: "unpair", Detail: "from " + ctrl, Actor: id.DeviceID})
	return nil
}

// pairSides checks a pair or unpair request and returns (controller, gadget).
func (h *Hub) pairSides(ctx context.Context, id devices.Identity, peerID string) (string, string, error) {
	if h.sync == nil {
		return "", "", Errorf(EInternal, "pairing is not configured")
	}
	if !id.Bound() {
		return "", "", Errorf(ENotBound, "this device is not bound to an account")
	}
	if peerID == id.DeviceID {
		return "", "", FieldError(ENotPairable, "args.device_id", "a device cannot pair with itself")
	}
	other := FieldError(ENotSameAccount, "args.device_id", "that device is not in your account")
	if devices.ValidIdentifier(peerID) != nil {
		return "", "", other
	}
	peer, err := h.store.DeviceByID(ctx, peerID)
	if ErrorCode(err) == ENotFound {
		return "", "", other
	}
	if err != nil {
		return "", "", err
	}
	// Checked before the types, so nothing about another account's device shows.
	if peer.AccountID != "" && peer.AccountID != id.AccountID {
		return "", "", other
	}
	if peer.AccountID == "" {
		return "", "", FieldError(ENotBound, "args.device_id", "that device is not bound to an account")
	}
	if !devices.CanPair(id.Type, peer.Type) {
		return "", "", FieldError(ENotPairable, "args.device_id", "a %s and a %s cannot pair: a phone or tablet pairs with a band or scale", id.Type, peer.Type)
	}
	if devices.IsController(id.Type) {
		return id.DeviceID, peer.ID, nil
	}
	return peer.ID, id.DeviceID, nil
}

// isPaired reports whether a gadget is paired, from the in-memory view (loaded on first use,
// dropped on every change made through this hub).
func (h *Hub) isPaired(ctx context.Context, gadgetID string) (bool, error) {
	st := h.sync
	st.pairMu.RLock()
	p, ok := st.paired[gadgetID]
	gen := st.pairGen
	st.pairMu.RUnlock()
	if ok {
		return p, nil
	}
	ps, err := st.store.PairingsOf(ctx, gadgetID)
	if err != nil {
		return false, err
	}
	p = len(ps) > 0
	st.pairMu.Lock()
	if st.pairGen == gen {
		st.paired[gadgetID] = p
	}
	st.pairMu.Unlock()
	return p, nil
}

// pairingChanged brings the in-memory view in line after pairings of the given controllers
// (and devices) changed in the store.
func (h *Hub) pairingChanged(controllers []string, deviceIDs ...string) {
	st := h.sync
	st.pairMu.Lock()
	st.pairGen++
	for _, d := range deviceIDs {
		delete(st.paired, d)
	}
	st.pairMu.Unlock()
	// The controllers' relays: one fed from memory decides entitlement from the pairings it
	// loaded, so it goes back to the sync log, whose reads join the pairings as they are now
	// (live.go); one reading the log wakes, as it may now be entitled to more.
	st.mu.Lock()
	for _, c := range controllers {
		if s := st.byController[c]; s != nil {
			s.leaveLive()
		}
	}
	st.mu.Unlock()
}

// unbindDevice unbinds in the store (one transaction with the device's pairings, cursors and
// settings), then brings the hub's in-memory view in line, ends the device's relay and tells
// the former peers their pairing ended.
func (h *Hub) unbindDevice(ctx context.Context, deviceID string) error {
	var before []Pairing
	if h.sync != nil {
		ps, err := h.sync.store.PairingsOf(ctx, deviceID)
		if err != nil {
			return err
		}
		before = ps
	}
	if err := h.store.UnbindDevice(ctx, deviceID); err != nil {
		return err
	}
	if h.sync == nil {
		return nil
	}
	ids := []string{deviceID}
	var controllers []string
	for _, p := range before {
		ids = append(ids, p.GadgetID, p.ControllerID)
		controllers = append(controllers, p.ControllerID)
	}
	h.pairingChanged(controllers, ids...)
	h.sync.closeController(deviceID)
	// The former peers are told durably. The unbound device is told now if it is connected
	// (it is disconnected next and told "unbound"); its pending notices, a link key among
	// them, are deleted: it has no pairings left to hear about.
	now := h.clock.Now()
	var notices []PairingNotice
	for _, p := range before {
		peer := p.GadgetID
		if peer == deviceID {
			peer = p.ControllerID
		}
		notices = append(notices, PairingNotice{ID: NewID("cmd"), DeviceID: peer, PeerID: deviceID, Type: devices.CmdUnpaired, CreatedAt: now})
		h.sendCommand(ctx, deviceID, devices.CmdUnpaired, devices.UnpairedArgs{PeerID: peer})
	}
	if err := h.sync.store.ReplacePairingNotices(ctx, deviceID, notices); err != nil {
		// The unbinding itself stands; the peers learn it when their pairing list is read.
		h.log.Warn("store unpaired notices", "device", deviceID, "error", err)
		return nil
	}
	h.sendNotices(ctx, notices)
	return nil
}

// sendNotices publishes pairing notices to the devices that are connected now; the others
// get them when they next subscribe (PairingsOnSubscribe), as with owner commands: the store
// is the queue, and nothing is left in a persistent session's broker queue.
func (h *Hub) sendNotices(ctx context.Context, notices []PairingNotice) {
	for _, n := range notices {
		if h.deviceOnline(ctx, n.DeviceID) {
			h.publishNotice(ctx, n)
		}
	}
}

func (h *Hub) publishNotice(ctx context.Context, n PairingNotice) {
	var args any = devices.UnpairedArgs{PeerID: n.PeerID}
	if n.Type == devices.CmdPaired {
		args = devices.PairedArgs{PeerID: n.PeerID, LinkKey: n.LinkKey}
	}
	_ = h.publishCommand(ctx, n.DeviceID, n.ID, n.Type, args, n.CreatedAt)
}

// PairingsOnSubscribe sends a device the pairing notices it has not acknowledged: a link key
// made while it was offline, or a pairing that ended meanwhile. The transport calls it when
// the device's SUBSCRIBE covering its commands topic was granted. It only reads.
func (h *Hub) PairingsOnSubscribe(ctx context.Context, id devices.Identity) {
	if h.sync == nil || !id.Bound() {
		return
	}
	ns, err := h.sync.store.PairingNotices(ctx, id.DeviceID)
	if err != nil {
		h.log.Warn("pairing notices", "device", id.DeviceID, "error", err)
		return
	}
	for _, n := range ns {
		h.publishNotice(ctx, n)
	}
}

// ackPairingNotice deletes a notice the device acknowledged (with its link key).
func (h *Hub) ackPairingNotice(ctx context.Context, deviceID, commandID string) error {
	if h.sync == nil {
		return nil
	}
	_, err := h.sync.store.DeletePairingNotice(ctx, deviceID, commandID)
	return err
}

// AccountPairingStore is the bulk read behind the device lists: an account's pairings in one
// query instead of one per device. The sync store provides it (store/sqlite's SyncLog does);
// it is kept apart from SyncStore so that a sync store without it still works, read one
// device at a time (Hub.AccountPairings).
type AccountPairingStore interface {
	// PairingsOfAccount lists the pairings of accountID whose two devices are both bound to
	// accountID now, oldest first.
	PairingsOfAccount(ctx context.Context, accountID string) ([]Pairing, error)
}

// PairedDevices returns the devices paired with deviceID, oldest pairing first, if deviceID
// belongs to accountID. Another account's device is not_found exactly like one that does not
// exist (ownedDevice), so the answer says nothing about devices the caller does not own.
func (h *Hub) PairedDevices(ctx context.Context, accountID, deviceID string) ([]DeviceView, error) {
	d, err := h.ownedDevice(ctx, accountID, deviceID)
	if err != nil {
		return nil, err
	}
	if h.sync == nil {
		return nil, nil // pairing is off: nothing can be paired
	}
	ps, err := h.sync.store.PairingsOf(ctx, d.ID)
	if err != nil {
		return nil, fmt.Errorf("pairings of %s: %w", d.ID, err)
	}
	if len(ps) == 0 {
		return nil, nil
	}
	// One read of the account's devices names every partner, and leaves out a partner that is
	// not in the account now: a pairing that outlived a binding must not show another
	// account's device.
	ds, err := h.store.DevicesByAccount(ctx, accountID)
	if err != nil {
		return nil, fmt.Errorf("devices of the account: %w", err)
	}
	byID := make(map[string]Device, len(ds))
	for _, x := range ds {
		byID[x.ID] = x
	}
	out := make([]DeviceView, 0, len(ps))
	for _, p := range ps {
		peer := p.GadgetID
		if peer == d.ID {
			peer = p.ControllerID
		}
		if pd, ok := byID[peer]; ok && p.AccountID == accountID {
			out = append(out, pd.view())
		}
	}
	return out, nil
}

// AccountPairings returns, for every paired device of the account, the IDs of the devices
// it is paired with, oldest pairing first; unpaired devices have no entry. Only pairings
// whose two devices are both in the account now are listed. The device lists use it: one
// store read for the whole account rather than PairedDevices per device.
func (h *Hub) AccountPairings(ctx context.Context, accountID string) (map[string][]string, error) {
	out := make(map[string][]string)
	if h.sync == nil {
		return out, nil // pairing is off: nothing can be paired
	}
	var ps []Pairing
	var err error
	if bulk, ok := h.sync.store.(AccountPairingStore); ok {
		ps, err = bulk.PairingsOfAccount(ctx, accountID)
	} else {
		ps, err = h.accountPairingsByDevice(ctx, accountID)
	}
	if err != nil {
		return nil, fmt.Errorf("pairings of the account: %w", err)
	}
	for _, p := range ps {
		out[p.ControllerID] = append(out[p.ControllerID], p.GadgetID)
		out[p.GadgetID] = append(out[p.GadgetID], p.ControllerID)
	}
	return out, nil
}

// accountPairingsByDevice is AccountPairings' read for a sync store without the bulk read:
// one PairingsOf per controller of the account, in the order PairingsOfAccount gives.
func (h *Hub) accountPairingsByDevice(ctx context.Context, accountID string) ([]Pairing, error) {
	ds, err := h.store.DevicesByAccount(ctx, accountID)
	if err != nil {
		return nil, err
	}
	in := make(map[string]bool, len(ds))
	for _, d := range ds {
		in[d.ID] = true
	}
	var out []Pairing
	for _, d := range ds {
		// Every pairing has exactly one controller: reading from that side lists each once.
		if !devices.IsController(d.Type) {
			continue
		}
		ps, err := h.sync.store.PairingsOf(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if p.ControllerID == d.ID && in[p.GadgetID] && p.AccountID == accountID {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b Pairing) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ControllerID, b.ControllerID), cmp.Compare(a.GadgetID, b.GadgetID))
	})
	return out, nil
}
