// Package app wires one devicehub process together: store → hub → broker → HTTP server, in
// that order, and takes them down in reverse. `devicehub serve`, the simulator's --embedded
// mode and the end-to-end tests all start the hub through it.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicehub/devicehub/api"
	"github.com/devicehub/devicehub/broker"
	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/metrics"
	"github.com/devicehub/devicehub/notify"
	"github.com/devicehub/devicehub/store/sqlite"
	"github.com/devicehub/devicehub/web"
)

// App is one running hub.
type App struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	db      *sqlite.DB
	state   *sqlite.BrokerState
	sync    *sqlite.SyncLog
	stopRet context.CancelFunc // stops sync retention
	hub     *hub.Hub
	stopCmd context.CancelFunc // stops command expiry
	outbox  *notify.Outbox
	broker  *broker.Broker
	httpLn  net.Listener
	httpSrv *http.Server
	ready   atomic.Bool
	served  chan error

	brokerClosed bool // mochi's Close must run once; shutdown closes it before closeAll

	shutdownOnce sync.Once
	shutdownErr  error
}

// New opens the store and every listener. A listener that cannot be opened fails here with a
// *config.Error naming its key.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *App, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, log: log, metrics: metrics.New(), served: make(chan error, 1)}
	// a, not the named result: every failure returns a nil *App, and what was opened until
	// then must still be closed.
	defer func() {
		if err != nil {
			_ = a.closeAll()
		}
	}()

	var tlsCfg *tls.Config
	if cfg.TLS.Enabled() {
		if tlsCfg, err = cfg.TLS.Load(); err != nil {
			return nil, &config.Error{Key: "tls.cert_file", Value: cfg.TLS.CertFile, Reason: "cannot load the certificate and key", Err: err}
		}
	}

	a.db, err = sqlite.Open(ctx, cfg.Store.Path, sqlite.Options{
		Synchronous: cfg.Store.Synchronous, BusyTimeout: cfg.Store.BusyTimeout, Logger: log.With("component", "store"),
	})
	if err != nil {
		return nil, &config.Error{Key: "store.path", Value: cfg.Store.Path, Reason: "cannot open the database", Err: err}
	}
	a.db.SetObserver(a.metrics.ObserveStore)
	a.state = a.db.BrokerState()
	a.outbox = notify.New(notify.Options{Store: a.db, Sender: notifySender(cfg.Notify), Logger: log.With("component", "notify")})
	if a.sync, err = a.db.SyncLog(ctx); err != nil {
		return nil, err
	}
	a.hub = hub.New(hub.Options{Store: a.db, Notifier: a.outbox, Logger: log.With("component", "hub"),
		Accounts:    hub.AccountOptions{PublicURL: cfg.Notify.PublicURL},
		Sync:        a.sync,
		SyncOptions: hub.SyncOptions{Retention: cfg.Sync.Retention, MaxEntries: cfg.Sync.MaxEntries, Window: cfg.Sync.Window},
		Commands:    a.db,
		CommandOptions: hub.CommandOptions{TTL: cfg.Commands.TTL, SecurityTTL: cfg.Commands.SecurityTTL,
			LocationInterval: cfg.LostMode.LocationInterval}})

	a.broker, err = broker.New(broker.Options{
		TCPAddr:              cfg.Broker.TCPAddr,
		WSAddr:               cfg.Broker.WSAddr,
		TLS:                  tlsCfg,
		AllowAnonymous:       cfg.Broker.AllowAnonymous,
		MaxPacketSize:        cfg.Broker.MaxPacketSize,
		MaxConnectPacketSize: cfg.Broker.MaxConnectPacketSize,
		ConnectTimeout:       cfg.Broker.ConnectTimeout,
		MaxUnackedPublishes:  cfg.Broker.MaxUnackedPublishes,
		State:                stateAdapter{a.state},
		Hub:                  a.hub,
		SyncWindow:           cfg.Sync.Window,
		Metrics:              a.metrics,
		Logger:               log.With("component", "broker"),
	})
	if err != nil {
		var ae *broker.AddrError
		if errors.As(err, &ae) {
			key := "broker.tcp_addr"
			if ae.Listener == "ws" {
				key = "broker.ws_addr"
			}
			return nil, &config.Error{Key: key, Value: ae.Addr, Reason: "cannot listen", Err: ae.Err}
		}
		return nil, err
	}

	a.hub.AttachTransport(a.broker.HubPublisher(), a.broker)

	a.httpLn, err = net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, &config.Error{Key: "http.addr", Value: cfg.HTTP.Addr, Reason: "cannot listen", Err: err}
	}
	if tlsCfg != nil {
		a.httpLn = tls.NewListener(a.httpLn, tlsCfg)
	}
	handler := api.New(api.Options{Hub: a.hub, Metrics: a.metrics, Ready: a.Ready, AdminToken: cfg.Admin.Token, Logger: log.With("component", "http")})
	// The account portal (web pages) answers every path the API does not claim.
	portalKey, err := a.db.ServerKey(ctx, "portal_csrf")
	if err != nil {
		return nil, fmt.Errorf("portal key: %w", err)
	}
	portal, err := web.New(web.Options{Hub: a.hub, Logger: log.With("component", "web"), Secure: tlsCfg != nil, Key: portalKey})
	if err != nil {
		return nil, err
	}
	handler.Handle("/", portal)
	a.httpSrv = &http.Server{
		Handler:           portal.ConfirmLinks(handler),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return a, nil
}

// Start restores the broker's sessions and starts serving.
func (a *App) Start() error {
	if err := a.broker.Start(); err != nil {
		return err
	}
	go func() {
		err := a.httpSrv.Serve(a.httpLn)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.served <- err
	}()
	a.outbox.Start()
	cmdCtx, stopCmd := context.WithCancel(context.Background())
	a.stopCmd = stopCmd
	go a.hub.RunCommandExpiry(cmdCtx)
	retCtx, stopRet := context.WithCancel(context.Background())
	a.stopRet = stopRet
	go a.hub.RunRetention(retCtx)
	a.ready.Store(true)
	a.log.Info("devicehub started", "mqtt", a.broker.TCPAddr(), "ws", a.broker.WSAddr(), "http", a.HTTPAddr(), "store", a.db.Path())
	return nil
}

// Ready reports whether the hub serves: the store answers and the broker listens.
func (a *App) Ready(ctx context.Context) error {
	if !a.ready.Load() {
		return errors.New("starting")
	}
	if err := a.db.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Served is closed-over by Run: an HTTP server failure after start.
func (a *App) Served() <-chan error { return a.served }

// MQTTAddr, WSAddr and HTTPAddr are the bound addresses (useful when configured with port 0).
func (a *App) MQTTAddr() string { return a.broker.TCPAddr() }
func (a *App) WSAddr() string   { return a.broker.WSAddr() }
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// DB is the open store (for tests and admin commands in the same process).
func (a *App) DB() *sqlite.DB { return a.db }

// Hub is the domain service (for tests and admin commands in the same process).
func (a *App) Hub() *hub.Hub { return a.hub }

// Metrics is the process's collectors.
func (a *App) Metrics() *metrics.Metrics { return a.metrics }

// Shutdown stops accepting on every listener, lets in-flight work finish (HTTP requests until
// ctx ends, then their connections are closed; the MQTT clients' publishes under way), and
// then closes the store cleanly (WAL checkpointed).
func (a *App) Shutdown(ctx context.Context) error {
	a.shutdownOnce.Do(func() { a.shutdownErr = a.shutdown(ctx) })
	return a.shutdownErr
}

func (a *App) shutdown(ctx context.Context) error {
	a.ready.Store(false)
	var errs []error
	// Every listener stops accepting at once. http.Server.Shutdown closes its listener first
	// and then waits for the requests in flight, so it runs beside the broker's Close, which
	// closes the MQTT listeners and then disconnects the clients, waiting for their
	// goroutines (a publish being committed finishes; its PUBACK may not go out, and the
	// client sends it again). The broker used to be closed only after the HTTP shutdown, so
	// MQTT kept accepting connections for as long as a slow request held that up.
	httpDone := make(chan error, 1)
	if a.httpSrv != nil {
		go func() { httpDone <- a.httpSrv.Shutdown(ctx) }()
	} else {
		httpDone <- nil
	}
	if a.broker != nil {
		errs = append(errs, a.broker.Close())
		a.brokerClosed = true
	}
	if err := <-httpDone; err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		// Out of time: end the requests still running before the store closes under them.
		_ = a.httpSrv.Close()
	}
	errs = append(errs, a.closeAll())
	a.log.Info("devicehub stopped")
	return errors.Join(errs...)
}

func (a *App) closeAll() error {
	var errs []error
	if a.outbox != nil {
		a.outbox.Stop() // before the store closes under it
	}
	if a.broker != nil && !a.brokerClosed {
		errs = append(errs, a.broker.Close())
	}
	if a.httpLn != nil {
		_ = a.httpLn.Close() // already closed by Shutdown when the server ran
	}
	if a.stopRet != nil {
		a.stopRet()
	}
	if a.stopCmd != nil {
		a.stopCmd()
	}
	if a.state != nil {
		a.state.Close()
	}
	if a.sync != nil {
		a.sync.Close() // after the broker: no publish is waiting on it any more
	}
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	return errors.Join(errs...)
}

// stateAdapter lets the broker persist into the store without either importing the other.
type stateAdapter struct{ s *sqlite.BrokerState }

func (s stateAdapter) Apply(ctx context.Context, ops ...broker.StateOp) error {
	conv := make([]sqlite.BrokerStateOp, len(ops))
	for i, op := range ops {
		conv[i] = sqlite.BrokerStateOp(op)
	}
	return s.s.Apply(ctx, conv...)
}

func (s stateAdapter) List(ctx context.Context, kind string) ([][]byte, error) {
	return s.s.List(ctx, kind)
}

// notifySender is the delivery driver notify.driver selects; nil (outbox) keeps messages in
// the outbox.
func notifySender(c config.NotifyConfig) notify.Sender {
	switch c.Driver {
	case "webhook":
		return notify.Webhook{URL: c.WebhookURL}
	case "smtp":
		return notify.SMTP{Host: c.SMTP.Host, Port: c.SMTP.Port, Username: c.SMTP.Username, Password: c.SMTP.Password, From: c.SMTP.From}
	}
	return nil
}
