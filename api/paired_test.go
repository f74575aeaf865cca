package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/devices"
	devclient "github.com/devicehub/devicehub/devices/client"
)

// pairedOf decodes a device's "paired" member, failing the test when it is missing or not an
// array (null included: clients range over it).
func pairedOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var d struct {
		Paired *[]string `json:"paired"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.Paired == nil {
		t.Fatalf("no paired array in %s", raw)
	}
	return *d.Paired
}

// pairedInList is GET /api/v1/devices as device ID → paired IDs.
func pairedInList(t *testing.T, c *client, token string) map[string][]string {
	t.Helper()
	r := c.want(c.do("GET", "/api/v1/devices", token, nil), http.StatusOK)
	var out struct{ Devices []json.RawMessage }
	if err := json.Unmarshal(r.raw, &out); err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, raw := range out.Devices {
		var d struct{ ID string }
		_ = json.Unmarshal(raw, &d)
		m[d.ID] = pairedOf(t, raw)
	}
	return m
}

// pairedOne is GET /api/v1/devices/{id}'s paired IDs.
func pairedOne(t *testing.T, c *client, token, id string) []string {
	t.Helper()
	return pairedOf(t, c.want(c.do("GET", "/api/v1/devices/"+id, token, nil), http.StatusOK).raw)
}

func connectDevice(t *testing.T, h *apptest.Hub, id, secret string) *devclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := devclient.Connect(ctx, devclient.Options{Broker: h.MQTTURL(), DeviceID: id, Secret: secret, CleanSession: true})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(d.Close)
	return d
}

// TestDevicePairedField: a phone paired with a band over MQTT lists the band in its
// "paired" array and the band lists the phone, in both the list and the single-device
// answers; unpairing and unbinding empty them; another account gets 404 for the band,
// exactly as for a device that does not exist.
func TestDevicePairedField(t *testing.T) {
	h := apptest.Start(t, nil)
	c := newClient(t, h.URL(), h.Config.Admin.Token)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	anna := c.signUp("anna@example.com")
	boris := c.signUp("boris@example.com")

	ph := c.want(c.do("POST", "/api/v1/devices", anna, map[string]string{"type": "phone", "name": "Anna's phone"}), http.StatusCreated)
	phoneID := ph.str("device_id")
	var prov struct {
		Devices []struct {
			DeviceID string `json:"device_id"`
			Secret   string `json:"secret"`
		} `json:"devices"`
	}
	pr := c.want(c.do("POST", "/api/v1/admin/devices", c.admin, map[string]any{"type": "band", "count": 1}), http.StatusCreated)
	if err := json.Unmarshal(pr.raw, &prov); err != nil || len(prov.Devices) != 1 {
		t.Fatalf("provision: %s %v", pr.raw, err)
	}
	bandID := prov.Devices[0].DeviceID

	// The band asks for its code with its factory secret; Anna binds it with that code.
	factory := connectDevice(t, h, bandID, prov.Devices[0].Secret)
	raw, err := factory.Request(ctx, devices.OpBindCode, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bc devices.BindCodeResult
	if err := json.Unmarshal(raw, &bc); err != nil {
		t.Fatal(err)
	}
	c.want(c.do("POST", "/api/v1/devices/bind", anna, map[string]string{"device_id": bandID, "code": bc.Code}), http.StatusOK)

	if got := pairedInList(t, c, anna); len(got[phoneID]) != 0 || len(got[bandID]) != 0 || len(got) != 2 {
		t.Fatalf("before pairing: %v", got)
	}

	phone := connectDevice(t, h, phoneID, ph.str("secret"))
	pair := func(op string) {
		t.Helper()
		if _, err := phone.Request(ctx, op, devices.PairArgs{DeviceID: bandID}); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	pair(devices.OpPair)

	want := map[string][]string{phoneID: {bandID}, bandID: {phoneID}}
	if got := pairedInList(t, c, anna); !reflect.DeepEqual(got, want) {
		t.Fatalf("GET /devices: paired %v, want %v", got, want)
	}
	for id, w := range want {
		if got := pairedOne(t, c, anna, id); !reflect.DeepEqual(got, w) {
			t.Fatalf("GET /devices/%s: paired %v, want %v", id, got, w)
		}
	}
	// The existing fields are all still there.
	one := c.want(c.do("GET", "/api/v1/devices/"+bandID, anna, nil), http.StatusOK)
	for _, k := range []string{"id", "type", "name", "account_id", "bound_at", "online", "created_at", "paired"} {
		if _, ok := one.body[k]; !ok {
			t.Errorf("GET /devices/%s has no %q: %s", bandID, k, one.raw)
		}
	}

	// Boris gets exactly what he gets for a device that does not exist, and his list shows
	// nothing of Anna's.
	missing := c.want(c.do("GET", "/api/v1/devices/dev_doesnotexist", boris, nil), http.StatusNotFound)
	for _, id := range []string{bandID, phoneID} {
		r := c.want(c.do("GET", "/api/v1/devices/"+id, boris, nil), http.StatusNotFound)
		if r.errCode() != "not_found" || string(r.raw) != string(missing.raw) {
			t.Errorf("Boris reading %s: %s, want %s", id, r.raw, missing.raw)
		}
	}
	if got := pairedInList(t, c, boris); len(got) != 0 {
		t.Errorf("Boris's list: %v", got)
	}

	pair(devices.OpUnpair)
	want = map[string][]string{phoneID: {}, bandID: {}}
	if got := pairedInList(t, c, anna); !reflect.DeepEqual(got, want) {
		t.Fatalf("after unpair, GET /devices: %v", got)
	}
	for id := range want {
		if got := pairedOne(t, c, anna, id); len(got) != 0 {
			t.Fatalf("after unpair, GET /devices/%s: %v", id, got)
		}
	}

	pair(devices.OpPair)
	if got := pairedOne(t, c, anna, phoneID); !reflect.DeepEqual(got, []string{bandID}) {
		t.Fatalf("paired again: %v", got)
	}
	c.want(c.do("POST", "/api/v1/devices/"+bandID+"/unbind", anna, map[string]string{"password": testPassword}), http.StatusOK)
	if got := pairedInList(t, c, anna); !reflect.DeepEqual(got, map[string][]string{phoneID: {}}) {
		t.Fatalf("after unbinding the band, GET /devices: %v", got)
	}
	if got := pairedOne(t, c, anna, phoneID); len(got) != 0 {
		t.Fatalf("after unbinding the band, GET /devices/%s: %v", phoneID, got)
	}
	c.want(c.do("GET", "/api/v1/devices/"+bandID, anna, nil), http.StatusNotFound)
}
