// Package api is devicehub's HTTP side: the JSON API under /api/v1, the admin endpoints,
// /healthz, /readyz and /metrics. Handlers decode and validate requests, call the hub domain,
// and map hub errors to HTTP statuses in one table (errors.go).
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/metrics"
)

// Options are the HTTP server's dependencies.
type Options struct {
	Hub     *hub.Hub
	Metrics *metrics.Metrics
	// AdminToken protects the admin-only endpoints; empty turns them off.
	AdminToken string
	// Ready reports whether the hub can serve (store open, broker listening).
	Ready  func(context.Context) error
	Logger *slog.Logger
}

// Server is the HTTP handler tree.
type Server struct {
	opts Options
	mux  *http.ServeMux
	log  *slog.Logger
}

// New builds the handler tree.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics.Registry, promhttp.HandlerOpts{}))
	s.routeAccounts()
	s.routeDevices()
	s.routeCommands()
	s.routeSync() // sync.go
	s.routeAdminLoad()
	return s
}

// Handle registers an extra handler (other packages' routes, such as the web portal).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	// ServeMux records the matched pattern on the request; label by it, not by the raw path,
	// so device IDs do not explode the metric's cardinality.
	pattern := r.Pattern
	if pattern == "" {
		pattern = "unmatched"
	}
	s.opts.Metrics.HTTPRequests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.opts.Ready == nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	if err := s.opts.Ready(ctx); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}
