package simulator

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/devices/client"
	"github.com/devicehub/devicehub/hub"
)

// TestAdminFastPath: the load-testing endpoints need the admin token, make accounts that can
// use the API at once, and bind devices that then log in with the returned secrets, while
// activation lock still holds.
func TestAdminFastPath(t *testing.T) {
	ctx := context.Background()
	e, target, err := StartEmbedded(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	admin := target.API().WithToken(target.AdminToken)
	anon := target.API()

	for _, path := range []string{"/api/v1/admin/accounts", "/api/v1/admin/bindings"} {
		if err := anon.WithToken("dh_not-admin").Do(ctx, http.MethodPost, path, map[string]int{"count": 1}, nil); apiclient.Code(err) != hub.EUnauthorized {
			t.Errorf("%s without the admin token: %v", path, err)
		}
	}
	var accs struct {
		Accounts []hub.LoadAccount `json:"accounts"`
	}
	if err := admin.Do(ctx, http.MethodPost, "/api/v1/admin/accounts", map[string]int{"count": 2}, &accs); err != nil {
		t.Fatal(err)
	}
	if len(accs.Accounts) != 2 {
		t.Fatalf("accounts = %+v", accs)
	}
	a, b := accs.Accounts[0], accs.Accounts[1]
	if _, err := anon.WithToken(a.Token).Devices(ctx); err != nil {
		t.Fatalf("the fast-path session does not work: %v", err)
	}
	if _, err := anon.Login(ctx, a.Identifier, a.Password); err != nil {
		t.Fatalf("the fast-path password does not sign in: %v", err)
	}
	if err := admin.Do(ctx, http.MethodPost, "/api/v1/admin/accounts", map[string]int{"count": 0}, nil); apiclient.Code(err) != hub.EInvalid {
		t.Errorf("count 0: %v", err)
	}

	cs, err := target.API().Provision(ctx, "band", 1)
	if err != nil {
		t.Fatal(err)
	}
	band := cs[0].DeviceID
	var out struct {
		Bindings []hub.LoadBinding `json:"bindings"`
	}
	body := map[string]any{"bindings": []hub.LoadBinding{{DeviceID: band, AccountID: a.AccountID}}}
	if err := admin.Do(ctx, http.MethodPost, "/api/v1/admin/bindings", body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Bindings) != 1 || out.Bindings[0].Secret == "" {
		t.Fatalf("bindings = %+v", out)
	}
	c, err := client.Connect(ctx, client.Options{Broker: target.MQTT, DeviceID: band, Secret: out.Bindings[0].Secret, CleanSession: true})
	if err != nil {
		t.Fatalf("login with the fast-path binding secret: %v", err)
	}
	c.Close()
	ds, err := anon.WithToken(a.Token).Devices(ctx)
	if err != nil || len(ds) != 1 || ds[0].ID != band {
		t.Fatalf("owner's devices = %+v %v", ds, err)
	}
	// Activation lock: the fast path does not take a device from its owner.
	body = map[string]any{"bindings": []hub.LoadBinding{{DeviceID: band, AccountID: b.AccountID}}}
	if err := admin.Do(ctx, http.MethodPost, "/api/v1/admin/bindings", body, nil); apiclient.Code(err) != hub.EDeviceLocked {
		t.Errorf("binding another account's device: %v", err)
	}
	// The secret is the hub's to choose.
	body = map[string]any{"bindings": []hub.LoadBinding{{DeviceID: band, AccountID: a.AccountID, Secret: "mine"}}}
	var ae *apiclient.Error
	if err := admin.Do(ctx, http.MethodPost, "/api/v1/admin/bindings", body, nil); !errors.As(err, &ae) || ae.Code != hub.EInvalid {
		t.Errorf("binding with a chosen secret: %v", err)
	}
}
