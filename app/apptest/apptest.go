// Package apptest starts a whole hub for tests: a real SQLite file in a temp dir, the real
// broker and HTTP server on loopback ports the OS picks, and helpers to talk to them.
package apptest

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app"
	"github.com/devicehub/devicehub/config"
)

// Hub is a running hub under test.
type Hub struct {
	*app.App
	Config *config.Config
	Dir    string
}

// Config returns the default configuration bound to loopback port 0 with its database in dir.
func Config(dir string) *config.Config {
	cfg := config.Default()
	cfg.Broker.TCPAddr = "127.0.0.1:0"
	cfg.Broker.WSAddr = "127.0.0.1:0"
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Store.Path = filepath.Join(dir, "devicehub.db")
	cfg.Admin.Token = "test-admin-token"
	return cfg
}

// Start runs a hub with the test's temp dir; mutate (may be nil) adjusts the configuration.
// The hub is shut down when the test ends.
func Start(tb testing.TB, mutate func(*config.Config)) *Hub {
	tb.Helper()
	return StartIn(tb, tb.TempDir(), mutate)
}

// StartIn runs a hub whose database lives in dir (so a test can restart on the same data).
func StartIn(tb testing.TB, dir string, mutate func(*config.Config)) *Hub {
	tb.Helper()
	cfg := Config(dir)
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("test config: %v", err)
	}
	level := slog.LevelWarn
	if os.Getenv("DEVICEHUB_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: level}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		tb.Fatalf("start hub: %v", err)
	}
	if err := a.Start(); err != nil {
		tb.Fatalf("start hub: %v", err)
	}
	h := &Hub{App: a, Config: cfg, Dir: dir}
	tb.Cleanup(func() { h.Stop(tb) })
	return h
}

// Stop shuts the hub down gracefully (idempotent).
func (h *Hub) Stop(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = h.Shutdown(ctx)
}

// URL is the hub's HTTP base URL.
func (h *Hub) URL() string { return "http://" + h.HTTPAddr() }

// MQTTURL is the broker's TCP URL for paho.
func (h *Hub) MQTTURL() string { return "tcp://" + h.MQTTAddr() }

// WSURL is the broker's WebSocket URL for paho.
func (h *Hub) WSURL() string { return "ws://" + h.WSAddr() + "/mqtt" }

// Eventually polls fn until it returns nil or the time is up, then fails with fn's last error.
// Use it instead of sleeping.
func Eventually(tb testing.TB, d time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Get fetches a URL with a bounded timeout.
func Get(tb testing.TB, url string) (*http.Response, error) {
	tb.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	return c.Get(url)
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}
