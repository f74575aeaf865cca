package app_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
)

// TestConnectTimeoutFromConfig: broker.connect_timeout reaches the listener: a connection
// that sends nothing is closed after it (1 s here), well before the 10 s default would.
func TestConnectTimeoutFromConfig(t *testing.T) {
	h := apptest.Start(t, func(c *config.Config) { c.Broker.ConnectTimeout = time.Second })
	c, err := net.Dial("tcp", h.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// The read ends when the hub closes the silent connection; the deadline is only how long
	// the test waits for that (half the default timeout).
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection was still open after %v with broker.connect_timeout 1s", time.Since(start).Round(time.Millisecond))
	}
	if err == nil {
		t.Fatal("read data from a connection that sent no CONNECT")
	}
}
