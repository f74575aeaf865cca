package hub_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/store/sqlite"
)

// perDeviceSync is the real SQLite sync store with its bulk pairing read hidden, so the hub
// takes the one-read-per-device path.
type perDeviceSync struct{ hub.SyncStore }

// pairingHub is a hub with pairing on a real SQLite file and a fake clock, two confirmed
// accounts (Anna, Boris), a second hub on the same database whose sync store lacks the bulk
// pairing read, and the sync store itself.
func pairingHub(t *testing.T) (h, perDevice *hub.Hub, clk *clock, anna, boris hub.LoadAccount, sl *sqlite.SyncLog) {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	sl = openSyncLog(t, db)
	opts, clk := baseOptions(db)
	opts.Sync = sl
	h = hub.New(opts)
	opts.Sync = perDeviceSync{sl}
	perDevice = hub.New(opts)
	accs, err := h.CreateLoadAccounts(ctx, 2, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return h, perDevice, clk, accs[0], accs[1], sl
}

// bindGadget provisions a gadget of type typ and binds it to accountID by its code.
func bindGadget(t *testing.T, h *hub.Hub, accountID string, typ devices.Type) devices.Identity {
	t.Helper()
	ctx := context.Background()
	creds, err := h.ProvisionDevices(ctx, typ, 1)
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.DeviceIdentity(ctx, creds[0].DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := h.RequestBindCode(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Bind(ctx, accountID, id.DeviceID, bc.Code, "test"); err != nil {
		t.Fatal(err)
	}
	id, err = h.DeviceIdentity(ctx, creds[0].DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func registerPhone(t *testing.T, h *hub.Hub, accountID, name string) devices.Identity {
	t.Helper()
	ctx := context.Background()
	creds, err := h.RegisterController(ctx, accountID, devices.Phone, name, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.DeviceIdentity(ctx, creds.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pairedIDs is PairedDevices as device IDs; it fails the test on an error.
func pairedIDs(t *testing.T, h *hub.Hub, accountID, deviceID string) []string {
	t.Helper()
	vs, err := h.PairedDevices(context.Background(), accountID, deviceID)
	if err != nil {
		t.Fatalf("PairedDevices(%s): %v", deviceID, err)
	}
	ids := []string{}
	for _, v := range vs {
		ids = append(ids, v.ID)
	}
	return ids
}

// checkAccountPairings compares AccountPairings, through the bulk read and device by device,
// with want.
func checkAccountPairings(t *testing.T, h, perDevice *hub.Hub, accountID string, want map[string][]string) {
	t.Helper()
	for name, x := range map[string]*hub.Hub{"bulk": h, "per device": perDevice} {
		got, err := x.AccountPairings(context.Background(), accountID)
		if err != nil {
			t.Fatalf("%s: AccountPairings: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: AccountPairings = %v, want %v", name, got, want)
		}
	}
}

// TestPairedDevicesOwnerScoped: each side of a pairing lists the other (with its name),
// oldest pairing first; unpairing and unbinding empty the lists; another account's request
// is not_found exactly like a device that does not exist.
func TestPairedDevicesOwnerScoped(t *testing.T) {
	ctx := context.Background()
	h, perDevice, clk, anna, boris, _ := pairingHub(t)
	phone := registerPhone(t, h, anna.AccountID, "Anna's phone")
	band := bindGadget(t, h, anna.AccountID, devices.Band)
	scale := bindGadget(t, h, anna.AccountID, devices.Scale)
	borisPhone := registerPhone(t, h, boris.AccountID, "Boris's phone")

	if got := pairedIDs(t, h, anna.AccountID, phone.DeviceID); len(got) != 0 {
		t.Fatalf("before pairing: %v", got)
	}
	checkAccountPairings(t, h, perDevice, anna.AccountID, map[string][]string{})

	if err := h.Pair(ctx, phone, band.DeviceID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	// The gadget asks this time: the controller is the same side either way.
	if err := h.Pair(ctx, scale, phone.DeviceID); err != nil {
		t.Fatal(err)
	}

	vs, err := h.PairedDevices(ctx, anna.AccountID, phone.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].ID != band.DeviceID || vs[1].ID != scale.DeviceID || vs[0].Name != "band" || vs[0].AccountID != anna.AccountID {
		t.Fatalf("phone's partners = %+v, want the band then the scale", vs)
	}
	if got := pairedIDs(t, h, anna.AccountID, band.DeviceID); !reflect.DeepEqual(got, []string{phone.DeviceID}) {
		t.Fatalf("band's partners = %v", got)
	}
	checkAccountPairings(t, h, perDevice, anna.AccountID, map[string][]string{
		phone.DeviceID: {band.DeviceID, scale.DeviceID},
		band.DeviceID:  {phone.DeviceID},
		scale.DeviceID: {phone.DeviceID},
	})
	checkAccountPairings(t, h, perDevice, boris.AccountID, map[string][]string{})

	// Another account learns nothing: its answer for Anna's devices is the answer for a
	// device that does not exist.
	_, missing := h.PairedDevices(ctx, boris.AccountID, "dev_doesnotexist")
	if hub.ErrorCode(missing) != hub.ENotFound {
		t.Fatalf("missing device: %v", missing)
	}
	for _, id := range []string{phone.DeviceID, band.DeviceID, "../" + band.DeviceID} {
		vs, err := h.PairedDevices(ctx, boris.AccountID, id)
		if hub.ErrorCode(err) != hub.ENotFound || err.Error() != missing.Error() || vs != nil {
			t.Errorf("Boris reading %s: %v %v", id, vs, err)
		}
	}
	if got := pairedIDs(t, h, boris.AccountID, borisPhone.DeviceID); len(got) != 0 {
		t.Errorf("Boris's phone's partners = %v", got)
	}

	if err := h.Unpair(ctx, phone, band.DeviceID); err != nil {
		t.Fatal(err)
	}
	if got := pairedIDs(t, h, anna.AccountID, band.DeviceID); len(got) != 0 {
		t.Fatalf("band after unpair: %v", got)
	}
	if got := pairedIDs(t, h, anna.AccountID, phone.DeviceID); !reflect.DeepEqual(got, []string{scale.DeviceID}) {
		t.Fatalf("phone after unpair: %v", got)
	}

	if err := h.Unbind(ctx, anna.AccountID, scale.DeviceID, anna.Password, "test"); err != nil {
		t.Fatal(err)
	}
	if got := pairedIDs(t, h, anna.AccountID, phone.DeviceID); len(got) != 0 {
		t.Fatalf("phone after unbinding the scale: %v", got)
	}
	if _, err := h.PairedDevices(ctx, anna.AccountID, scale.DeviceID); hub.ErrorCode(err) != hub.ENotFound {
		t.Fatalf("unbound scale: %v", err)
	}
	checkAccountPairings(t, h, perDevice, anna.AccountID, map[string][]string{})
}

// TestPairedDevicesWithoutSync: a hub without a sync store has no pairings to list, and still
// hides other accounts' devices.
func TestPairedDevicesWithoutSync(t *testing.T) {
	ctx := context.Background()
	h, _, anna, _ := account(t, "nosync@example.com")
	phone := registerPhone(t, h, anna, "phone")
	if got := pairedIDs(t, h, anna, phone.DeviceID); len(got) != 0 {
		t.Fatalf("partners = %v", got)
	}
	if _, err := h.PairedDevices(ctx, "acc_someoneelse", phone.DeviceID); hub.ErrorCode(err) != hub.ENotFound {
		t.Fatalf("another account: %v", err)
	}
	if m, err := h.AccountPairings(ctx, anna); err != nil || len(m) != 0 {
		t.Fatalf("AccountPairings = %v %v", m, err)
	}
}

// TestPairedDevicesIgnoreStrayRows: a pairing row across two accounts (the hub never writes
// one; unbinding deletes a device's pairings in the same transaction) shows on neither
// side, so a store that got one anyway still never reveals another account's device.
func TestPairedDevicesIgnoreStrayRows(t *testing.T) {
	ctx := context.Background()
	h, perDevice, clk, anna, boris, sl := pairingHub(t)
	band := bindGadget(t, h, anna.AccountID, devices.Band)
	borisPhone := registerPhone(t, h, boris.AccountID, "Boris's phone")
	for _, acc := range []string{anna.AccountID, boris.AccountID} {
		if err := sl.CreatePairing(ctx, hub.Pairing{ControllerID: borisPhone.DeviceID, GadgetID: band.DeviceID, AccountID: acc, CreatedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
		if got := pairedIDs(t, h, anna.AccountID, band.DeviceID); len(got) != 0 {
			t.Errorf("row of %s: Anna's band lists %v", acc, got)
		}
		if got := pairedIDs(t, h, boris.AccountID, borisPhone.DeviceID); len(got) != 0 {
			t.Errorf("row of %s: Boris's phone lists %v", acc, got)
		}
		checkAccountPairings(t, h, perDevice, anna.AccountID, map[string][]string{})
		checkAccountPairings(t, h, perDevice, boris.AccountID, map[string][]string{})
		if err := sl.DeletePairing(ctx, borisPhone.DeviceID, band.DeviceID); err != nil {
			t.Fatal(err)
		}
	}
}
