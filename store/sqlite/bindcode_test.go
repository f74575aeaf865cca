package sqlite

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// TestTakeBindCodeTryIsAtomic: of 50 parallel tries on a code with 5 allowed, exactly 5 get
// the code to compare; the rest are told there are no tries left. An expired or missing code
// gives no try either, and a bind needs the code it was given.
func TestTakeBindCodeTryIsAtomic(t *testing.T) {
	db := openTemp(t, 5*time.Second)
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := db.CreateDevices(ctx, []hub.Device{{ID: "dev_a", Type: devices.Band, Name: "band", CreatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TakeBindCodeTry(ctx, "dev_a", now, 5); hub.ErrorCode(err) != hub.ENotFound {
		t.Fatalf("try without a code: %v", err)
	}
	if err := db.SaveBindCode(ctx, hub.BindCode{DeviceID: "dev_a", CodeHash: []byte("h1"), ExpiresAt: now.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var got, refused atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			switch _, err := db.TakeBindCodeTry(ctx, "dev_a", now, 5); {
			case err == nil:
				got.Add(1)
			case hub.ErrorCode(err) == hub.ENotFound:
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got.Load() != 5 || refused.Load() != 45 {
		t.Fatalf("%d tries got the code, %d were refused; want 5 and 45", got.Load(), refused.Load())
	}

	if err := db.SaveBindCode(ctx, hub.BindCode{DeviceID: "dev_a", CodeHash: []byte("h2"), ExpiresAt: now.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TakeBindCodeTry(ctx, "dev_a", now.Add(5*time.Minute), 5); hub.ErrorCode(err) != hub.ENotFound {
		t.Fatalf("try on an expired code: %v", err)
	}
	if err := db.BindDevice(ctx, "dev_a", "acc_1", []byte("secret"), []byte("other"), now); hub.ErrorCode(err) != hub.EInvalidCode {
		t.Fatalf("bind with a code that is not the device's: %v", err)
	}
}
