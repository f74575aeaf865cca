package api

import (
	"net/http"
	"strconv"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// routeCommands registers the owner's commands, lost mode and location endpoints
// (docs/api.md, "Commands and lost mode").
func (s *Server) routeCommands() {
	s.mux.HandleFunc("POST /api/v1/devices/{id}/commands", s.requireAccount(s.postCommand))
	s.mux.HandleFunc("GET /api/v1/devices/{id}/commands", s.requireAccount(s.getCommands))
	s.mux.HandleFunc("GET /api/v1/devices/{id}/commands/{cid}", s.requireAccount(s.getCommand))
	s.mux.HandleFunc("GET /api/v1/devices/{id}/location", s.requireAccount(s.getLocation))
}

// commandAnswer is the answer to a new command; locate also carries the last known
// position (the fresh fix arrives later, as telemetry).
type commandAnswer struct {
	Command  hub.CommandView   `json:"command"`
	Location *hub.LocationView `json:"location,omitempty"`
}

func (s *Server) postCommand(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	var req hub.CommandRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	c, err := s.opts.Hub.IssueCommand(r.Context(), p.AccountID, r.PathValue("id"), req, "http")
	if err != nil {
		writeError(w, err)
		return
	}
	ans := commandAnswer{Command: c}
	if c.Type == devices.CmdLocate {
		if loc, err := s.opts.Hub.Location(r.Context(), p.AccountID, c.DeviceID); err == nil {
			ans.Location = &loc
		} else if hub.ErrorCode(err) != hub.ENotFound {
			writeError(w, err)
			return
		}
	}
	w.Header().Set("Location", "/api/v1/devices/"+c.DeviceID+"/commands/"+c.ID)
	writeJSON(w, http.StatusAccepted, ans)
}

func (s *Server) getCommands(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, hub.FieldError(hub.EInvalid, "limit", "limit must be a whole number from 1 to 1000"))
			return
		}
		limit = n
	}
	cs, err := s.opts.Hub.Commands(r.Context(), p.AccountID, r.PathValue("id"), limit)
	if err != nil {
		writeError(w, err)
		return
	}
	lm, err := s.opts.Hub.LostModeOf(r.Context(), p.AccountID, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"commands": cs, "lost_mode": lm})
}

func (s *Server) getCommand(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	c, err := s.opts.Hub.CommandStatus(r.Context(), p.AccountID, r.PathValue("id"), r.PathValue("cid"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) getLocation(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	loc, err := s.opts.Hub.Location(r.Context(), p.AccountID, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, loc)
}
