package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// gadget provisions one band and returns its unbound identity.
func gadget(t *testing.T, h *hub.Hub) devices.Identity {
	t.Helper()
	creds, err := h.ProvisionDevices(context.Background(), devices.Band, 1)
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.AuthenticateDevice(context.Background(), creds[0].DeviceID, creds[0].Secret, "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	if id.Bound() {
		t.Fatal("a factory login must give an unbound identity")
	}
	return id
}

func TestBindCodeExpires(t *testing.T) {
	h, clk, acc, _ := account(t, "expiry@example.com")
	ctx := context.Background()
	band := gadget(t, h)
	bc, err := h.RequestBindCode(ctx, band)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(5 * time.Minute); !bc.ExpiresAt.Equal(want) {
		t.Fatalf("code expires at %v, want %v", bc.ExpiresAt, want)
	}
	clk.Advance(5*time.Minute + time.Second)
	if _, err := h.Bind(ctx, acc, band.DeviceID, bc.Code, "test"); hub.ErrorCode(err) != hub.EInvalidCode {
		t.Fatalf("expired code: %v", err)
	}
	// A fresh code works, and the device's binding secret then authenticates it as bound.
	bc, err = h.RequestBindCode(ctx, band)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Minute)
	res, err := h.Bind(ctx, acc, band.DeviceID, bc.Code, "test")
	if err != nil || res.AccountID != acc {
		t.Fatalf("fresh code: %+v %v", res, err)
	}
	// A code is single-use even for its own account: binding again with it changes nothing
	// and is answered idempotently.
	if _, err := h.Bind(ctx, acc, band.DeviceID, bc.Code, "test"); err != nil {
		t.Fatalf("rebinding with a used code to the same account: %v", err)
	}
}

func TestDeviceLoginThrottle(t *testing.T) {
	h, clk, _, _ := account(t, "throttle@example.com")
	ctx := context.Background()
	creds, err := h.ProvisionDevices(ctx, devices.Scale, 1)
	if err != nil {
		t.Fatal(err)
	}
	id, secret := creds[0].DeviceID, creds[0].Secret
	for range 5 {
		if _, err := h.AuthenticateDevice(ctx, id, "wrong", "10.0.0.1"); hub.ErrorCode(err) != hub.EUnauthorized {
			t.Fatalf("wrong secret: %v", err)
		}
	}
	if _, err := h.AuthenticateDevice(ctx, id, secret, "10.0.0.1"); hub.ErrorCode(err) != hub.ERateLimited {
		t.Fatalf("right secret while throttled: %v", err)
	}
	// Back-off, not a lock: after the wait the device gets in.
	clk.Advance(10 * time.Second)
	if _, err := h.AuthenticateDevice(ctx, id, secret, "10.0.0.1"); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
}

func TestProvisionValidation(t *testing.T) {
	h, _, _, _ := account(t, "factory@example.com")
	ctx := context.Background()
	for _, tc := range []struct {
		typ   devices.Type
		n     int
		field string
	}{{"toaster", 1, "type"}, {devices.Band, 0, "count"}, {devices.Band, 10001, "count"}} {
		_, err := h.ProvisionDevices(ctx, tc.typ, tc.n)
		if e := hub.AsError(err); e == nil || e.Field != tc.field {
			t.Errorf("provision %s×%d: %v, want an error on %s", tc.typ, tc.n, err, tc.field)
		}
	}
}
