package api

import (
	"net/http"

	"github.com/devicehub/devicehub/hub"
)

// routeAdminLoad registers the load-testing fast path (docs/api.md, "Admin fast path"): the
// simulator's `sim load` makes thousands of accounts and bindings through it instead of
// solving challenges and reading codes for each. Admin token only, like every admin endpoint.
func (s *Server) routeAdminLoad() {
	s.mux.HandleFunc("POST /api/v1/admin/accounts", s.requireAdmin(s.postLoadAccounts))
	s.mux.HandleFunc("POST /api/v1/admin/bindings", s.requireAdmin(s.postLoadBindings))
}

type loadAccountsRequest struct {
	Count int `json:"count"`
}

func (s *Server) postLoadAccounts(w http.ResponseWriter, r *http.Request) {
	var req loadAccountsRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	accs, err := s.opts.Hub.CreateLoadAccounts(r.Context(), req.Count, clientIP(r))
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]any{"accounts": accs})
}

type loadBindingsRequest struct {
	Bindings []hub.LoadBinding `json:"bindings"`
}

func (s *Server) postLoadBindings(w http.ResponseWriter, r *http.Request) {
	var req loadBindingsRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	for i := range req.Bindings {
		if req.Bindings[i].Secret != "" {
			writeError(w, hub.FieldError(hub.EInvalid, "bindings", "secret is chosen by the hub, not sent"))
			return
		}
	}
	bs, err := s.opts.Hub.AdminBindDevices(r.Context(), req.Bindings)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"bindings": bs})
}
