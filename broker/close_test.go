package broker_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
)

// TestShutdownWhileClientsComeAndGo: the hub shuts down while clients keep connecting and
// leaving. mochi's own listener shutdown (Clients.GetByListener) takes the clients' read
// lock twice and hangs for good when a client leaves in between (mochi-mqtt/server#488);
// the broker disconnects a listener's clients with its own closeListenerClients instead.
// The hang is a race, so the test shuts down many hubs under churn: with GetByListener put
// back, both runs tried hung (one at round 7 of its first pass); without it, none has.
func TestShutdownWhileClientsComeAndGo(t *testing.T) {
	for round := range 16 {
		h := apptest.Start(t, anonymous)
		addr := h.MQTTAddr()
		var stop atomic.Bool
		var wg sync.WaitGroup
		var sessions atomic.Int64
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load() && i < 100000; i++ {
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						return // the listener is closed
					}
					_ = c.SetDeadline(time.Now().Add(hangGuard))
					if _, err := c.Write(connectFrame(4, fmt.Sprintf("churn-%d-%d-%d", round, w, i))); err == nil {
						if hdr, _, err := readPacket(c); err == nil && hdr == 0x20 {
							sessions.Add(1)
						}
					}
					c.Close()
				}
			}()
		}
		apptest.Eventually(t, 10*time.Second, func() error {
			if sessions.Load() < 20 {
				return fmt.Errorf("%d sessions so far", sessions.Load())
			}
			return nil
		})
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			done <- h.Shutdown(ctx)
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("round %d: shutdown: %v", round, err)
			}
		case <-time.After(hangGuard):
			// The test's cleanup would stop the hung hub again and hang with it: end the
			// test binary here, with the stacks that show where it hangs.
			fmt.Fprintf(os.Stderr, "--- FAIL: TestShutdownWhileClientsComeAndGo: round %d: shutdown hung with clients connecting and leaving\n", round)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
			os.Exit(1)
		}
		stop.Store(true)
		wg.Wait()
	}
}
