package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// routeSync registers the telemetry and settings endpoints (docs/api.md, "Telemetry and
// settings").
func (s *Server) routeSync() {
	s.mux.HandleFunc("GET /api/v1/devices/{id}/telemetry", s.requireAccount(s.getTelemetry))
	s.mux.HandleFunc("GET /api/v1/devices/{id}/settings", s.requireAccount(s.getSettings))
	s.mux.HandleFunc("PUT /api/v1/devices/{id}/settings", s.requireAccount(s.putSettings))
	s.mux.HandleFunc("GET /api/v1/profile", s.requireAccount(s.getProfile))
	s.mux.HandleFunc("PUT /api/v1/profile", s.requireAccount(s.putProfile))
}

func queryTime(r *http.Request, key string) (time.Time, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, hub.FieldError(hub.EInvalid, key, "%s must be an RFC 3339 time", key)
	}
	return t, nil
}

func queryInt(r *http.Request, key string, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, hub.FieldError(hub.EInvalid, key, "%s must be a whole number from %d to %d", key, lo, hi)
	}
	return n, nil
}

// getTelemetry pages through a device's stored samples, oldest first; pass the answer's
// "next" as ?after= for the next page.
func (s *Server) getTelemetry(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	from, err := queryTime(r, "from")
	if err != nil {
		writeError(w, err)
		return
	}
	to, err := queryTime(r, "to")
	if err != nil {
		writeError(w, err)
		return
	}
	limit, err := queryInt(r, "limit", 1, 1000)
	if err != nil {
		writeError(w, err)
		return
	}
	after, err := queryInt(r, "after", 0, 1<<62)
	if err != nil {
		writeError(w, err)
		return
	}
	page, err := s.opts.Hub.Telemetry(r.Context(), p.AccountID, r.PathValue("id"), r.URL.Query().Get("stream"), from, to, after, int(limit))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

type settingsRequest struct {
	Desired     json.RawMessage `json:"desired"`
	BaseVersion int64           `json:"base_version"`
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	s.writeSettings(w, r, p, r.PathValue("id"))
}

func (s *Server) getProfile(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	s.writeSettings(w, r, p, hub.ProfileID)
}

func (s *Server) writeSettings(w http.ResponseWriter, r *http.Request, p hub.Principal, id string) {
	res, err := s.opts.Hub.GetSettings(r.Context(), p.AccountID, id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	s.setSettings(w, r, p, r.PathValue("id"))
}

func (s *Server) putProfile(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	s.setSettings(w, r, p, hub.ProfileID)
}

// setSettings applies a merge patch against base_version; a stale base is 409 stale_version.
func (s *Server) setSettings(w http.ResponseWriter, r *http.Request, p hub.Principal, id string) {
	var req settingsRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := devices.ValidateSettingsDoc(req.Desired); err != nil {
		writeError(w, hub.FieldError(hub.EInvalid, "desired", "desired %s", err))
		return
	}
	res, err := s.opts.Hub.SetSettings(r.Context(), p.AccountID, id, req.Desired, req.BaseVersion)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
