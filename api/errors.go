package api

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/devicehub/devicehub/hub"
)

// statusOf is the one table from hub error codes to HTTP statuses. Codes not listed are 500.
// (A switch rather than a package-level map: nothing can change it at run time.)
func statusOf(code string) (int, bool) {
	switch code {
	case hub.EInvalid, hub.EInvalidCode:
		return http.StatusBadRequest, true
	case hub.EStale, hub.EConflict, hub.EDeviceLocked, hub.ENotBound, hub.ENotPairable:
		return http.StatusConflict, true
	case hub.EUnauthorized:
		return http.StatusUnauthorized, true
	case hub.EForbidden, hub.EChallengeFailed, hub.EAccountPending, hub.ENotSameAccount:
		return http.StatusForbidden, true
	case hub.ENotFound:
		return http.StatusNotFound, true
	case hub.ETooLarge:
		return http.StatusRequestEntityTooLarge, true
	case hub.ERateLimited:
		return http.StatusTooManyRequests, true
	}
	return 0, false
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// CurrentVersion comes with stale_version.
	CurrentVersion *int64 `json:"current_version,omitempty"`
}

// errorLogger is what writeError looks for on the ResponseWriter (see withLog) to log
// internal errors with the server's logger and the request.
type errorLogger interface {
	logInternal(err error)
}

// writeError answers with err: a hub Error with its status from statusOf (and Retry-After
// when rate limited); anything else is a bare 500 "internal", and the cause goes to the log.
func writeError(w http.ResponseWriter, err error) {
	e := hub.AsError(err)
	status, known := 0, false
	if e != nil {
		status, known = statusOf(e.Code)
	}
	if !known {
		logInternal(w, err)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: errorDetail{Code: hub.EInternal, Message: "internal error"}})
		return
	}
	if e.Code == hub.ERateLimited && e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Field: e.Field, CurrentVersion: e.CurrentVersion}})
}

func logInternal(w http.ResponseWriter, err error) {
	for {
		if l, ok := w.(errorLogger); ok {
			l.logInternal(err)
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			slog.Error("http: internal error", "error", err)
			return
		}
		w = u.Unwrap()
	}
}

// logWriter carries the server's logger and the request to writeError.
type logWriter struct {
	http.ResponseWriter
	log *slog.Logger
	r   *http.Request
}

func (l *logWriter) logInternal(err error) {
	l.log.Error("http: internal error", "method", l.r.Method, "path", l.r.URL.Path, "error", err)
}

func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// withLog gives handlers a ResponseWriter through which writeError logs with s.log.
func (s *Server) withLog(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(&logWriter{ResponseWriter: w, log: s.log, r: r}, r)
	}
}

// handle registers an API route whose internal errors are logged with the server's logger.
func (s *Server) handle(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, s.withLog(h)) }
