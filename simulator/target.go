package simulator

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/hub"
)

// Target is the hub the simulator drives.
type Target struct {
	// MQTT is the broker URL for paho, e.g. tcp://127.0.0.1:1883.
	MQTT string
	// HTTP is the API base URL, e.g. http://127.0.0.1:8080.
	HTTP string
	// AdminToken is the hub's admin.token: the outbox (codes) and the provisioning and load
	// fast paths need it.
	AdminToken string
}

// API returns an HTTP API client for the target with the admin token set.
func (t Target) API() *apiclient.Client {
	c := apiclient.New(t.HTTP)
	c.AdminToken = t.AdminToken
	return c
}

// ParseHub reads a --hub value: "mqtt=HOST:PORT,http=HOST:PORT". Addresses may carry their
// scheme (tcp://, ssl://, ws://, http://, https://); without one, tcp:// and http:// are meant.
func ParseHub(s string) (Target, error) {
	var t Target
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return Target{}, fmt.Errorf("--hub %q: want mqtt=HOST:PORT,http=HOST:PORT", s)
		}
		switch k {
		case "mqtt":
			if !strings.Contains(v, "://") {
				v = "tcp://" + v
			}
			t.MQTT = v
		case "http":
			if !strings.Contains(v, "://") {
				v = "http://" + v
			}
			t.HTTP = strings.TrimRight(v, "/")
		default:
			return Target{}, fmt.Errorf("--hub %q: unknown key %q (want mqtt and http)", s, k)
		}
	}
	if t.MQTT == "" || t.HTTP == "" {
		return Target{}, fmt.Errorf("--hub %q: both mqtt= and http= are needed", s)
	}
	return t, nil
}

// Embedded is a hub the simulator started in its own process.
type Embedded struct {
	app *app.App
	dir string
}

// StartEmbedded starts a hub in this process on loopback ports the OS picks, with its
// database in a fresh temporary directory and a random admin token. Close removes it all.
// One process holds both ends of every connection, so it suits the scenario and small loads
// (a 10,000-device load needs a separate `devicehub serve`, see docs/simulator.md).
func StartEmbedded(ctx context.Context, log *slog.Logger) (*Embedded, Target, error) {
	dir, err := os.MkdirTemp("", "devicehub-sim-")
	if err != nil {
		return nil, Target{}, fmt.Errorf("embedded hub: %w", err)
	}
	cfg := config.Default()
	cfg.Broker.TCPAddr = "127.0.0.1:0"
	cfg.Broker.WSAddr = "" // the simulator speaks TCP only
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Store.Path = filepath.Join(dir, "devicehub.db")
	cfg.Admin.Token = "sim-" + hub.RandomToken(24)
	if err := cfg.Validate(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, Target{}, fmt.Errorf("embedded hub config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, Target{}, fmt.Errorf("embedded hub: %w", err)
	}
	if err := a.Start(); err != nil {
		_ = a.Shutdown(ctx)
		_ = os.RemoveAll(dir)
		return nil, Target{}, fmt.Errorf("embedded hub: %w", err)
	}
	t := Target{MQTT: "tcp://" + a.MQTTAddr(), HTTP: "http://" + a.HTTPAddr(), AdminToken: cfg.Admin.Token}
	return &Embedded{app: a, dir: dir}, t, nil
}

// Close shuts the hub down and removes its directory.
func (e *Embedded) Close(ctx context.Context) error {
	err := e.app.Shutdown(ctx)
	if rerr := os.RemoveAll(e.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}
