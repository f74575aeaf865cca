package hub

import (
	"context"
	"crypto/rand"
	"fmt"

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
	if err := h.sync.store.CreatePairing(ctx, Pairing{ControllerID: ctrl, GadgetID: gadget, AccountID: id.AccountID, CreatedAt: h.clock.Now()}); err != nil {
		return err
	}
	h.pairingChanged(gadget)
	key := make([]byte, devices.LinkKeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("link key: %w", err)
	}
	h.sendCommand(ctx, ctrl, devices.CmdPaired, devices.PairedArgs{PeerID: gadget, LinkKey: key})
	h.sendCommand(ctx, gadget, devices.CmdPaired, devices.PairedArgs{PeerID: ctrl, LinkKey: key})
	h.audit(ctx, AuditEntry{AccountID: id.AccountID, DeviceID: gadget, Event: "pair", Detail: "with " + ctrl, Actor: id.DeviceID})
	h.sync.notifyAccount(id.AccountID) // the controller may now receive the gadget's entries
	return nil
}

// Unpair ends the pairing of the sender and peerID; both sides receive "unpaired".
func (h *Hub) Unpair(ctx context.Context, id devices.Identity, peerID string) error {
	ctrl, gadget, err := h.pairSides(ctx, id, peerID)
	if err != nil {
		return err
	}
	if err := h.sync.store.DeletePairing(ctx, ctrl, gadget); err != nil {
		return err
	}
	h.pairingChanged(gadget)
	h.sendCommand(ctx, ctrl, devices.CmdUnpaired, devices.UnpairedArgs{PeerID: gadget})
	h.sendCommand(ctx, gadget, devices.CmdUnpaired, devices.UnpairedArgs{PeerID: ctrl})
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

func (h *Hub) pairingChanged(deviceIDs ...string) {
	st := h.sync
	st.pairMu.Lock()
	st.pairGen++
	for _, d := range deviceIDs {
		delete(st.paired, d)
	}
	st.pairMu.Unlock()
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
	for _, p := range before {
		ids = append(ids, p.GadgetID, p.ControllerID)
	}
	h.pairingChanged(ids...)
	h.sync.closeController(deviceID)
	for _, p := range before {
		peer := p.GadgetID
		if peer == deviceID {
			peer = p.ControllerID
		}
		h.sendCommand(ctx, peer, devices.CmdUnpaired, devices.UnpairedArgs{PeerID: deviceID})
		h.sendCommand(ctx, deviceID, devices.CmdUnpaired, devices.UnpairedArgs{PeerID: peer})
	}
	return nil
}
