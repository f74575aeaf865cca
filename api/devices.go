package api

import (
	"net/http"
	"strconv"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// routeDevices registers the device, binding and audit endpoints (docs/api.md).
func (s *Server) routeDevices() {
	s.mux.HandleFunc("POST /api/v1/devices", s.requireAccount(s.postDevice))
	s.mux.HandleFunc("GET /api/v1/devices", s.requireAccount(s.getDevices))
	s.mux.HandleFunc("GET /api/v1/devices/{id}", s.requireAccount(s.getDevice))
	s.mux.HandleFunc("PATCH /api/v1/devices/{id}", s.requireAccount(s.patchDevice))
	s.mux.HandleFunc("POST /api/v1/devices/bind", s.requireAccount(s.postBind))
	s.mux.HandleFunc("POST /api/v1/devices/{id}/unbind", s.requireAccount(s.postUnbind))
	s.mux.HandleFunc("GET /api/v1/audit", s.requireAccount(s.getAudit))
	s.mux.HandleFunc("POST /api/v1/admin/devices", s.requireAdmin(s.postProvision))
}

type registerDeviceRequest struct {
	Type       string `json:"type"`
	Name       string `json:"name"`
	HardwareID string `json:"hardware_id,omitempty"`
}

// postDevice registers the phone or tablet the owner signed in on and returns its MQTT
// credentials, once.
func (s *Server) postDevice(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	var req registerDeviceRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	t, err := devices.ParseType(req.Type)
	if err != nil {
		writeError(w, hub.FieldError(hub.EInvalid, "type", "type must be phone or tablet"))
		return
	}
	creds, err := s.opts.Hub.RegisterController(r.Context(), p.AccountID, t, req.Name, req.HardwareID)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, creds)
}

func (s *Server) getDevices(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	ds, err := s.opts.Hub.Devices(r.Context(), p.AccountID)
	if err != nil {
		writeError(w, err)
		return
	}
	paired, err := s.opts.Hub.AccountPairings(r.Context(), p.AccountID)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]deviceJSON, len(ds))
	for i, d := range ds {
		out[i] = newDeviceJSON(d, paired[d.ID])
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	d, err := s.opts.Hub.Device(r.Context(), p.AccountID, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	peers, err := s.opts.Hub.PairedDevices(r.Context(), p.AccountID, d.ID)
	if err != nil {
		writeError(w, err)
		return
	}
	ids := make([]string, len(peers))
	for i, x := range peers {
		ids[i] = x.ID
	}
	writeJSON(w, http.StatusOK, newDeviceJSON(d, ids))
}

// deviceJSON is a device as GET /api/v1/devices and GET /api/v1/devices/{id} show it: the
// hub's view with its fields unchanged, and the IDs of the devices it is paired with.
type deviceJSON struct {
	hub.DeviceView
	Paired []string `json:"paired"`
}

// newDeviceJSON keeps paired an empty array rather than null when the device is not paired,
// so clients can always iterate it.
func newDeviceJSON(d hub.DeviceView, paired []string) deviceJSON {
	if paired == nil {
		paired = []string{}
	}
	return deviceJSON{DeviceView: d, Paired: paired}
}

type renameRequest struct {
	Name string `json:"name"`
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	var req renameRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	d, err := s.opts.Hub.RenameDevice(r.Context(), p.AccountID, r.PathValue("id"), req.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

type bindRequest struct {
	DeviceID string `json:"device_id"`
	Code     string `json:"code"`
}

func (s *Server) postBind(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	var req bindRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	res, err := s.opts.Hub.Bind(r.Context(), p.AccountID, req.DeviceID, req.Code, "http")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

type unbindRequest struct {
	Password string `json:"password"`
}

func (s *Server) postUnbind(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	var req unbindRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.opts.Hub.Unbind(r.Context(), p.AccountID, r.PathValue("id"), req.Password, "http"); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"device_id": r.PathValue("id"), "unbound": true})
}

func (s *Server) getAudit(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, hub.FieldError(hub.EInvalid, "limit", "limit must be a whole number from 1 to 1000"))
			return
		}
		limit = n
	}
	es, err := s.opts.Hub.Audit(r.Context(), p.AccountID, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": es})
}

type provisionRequest struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
}

// postProvision is the factory: it creates gadgets and returns their secrets once.
func (s *Server) postProvision(w http.ResponseWriter, r *http.Request) {
	var req provisionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	t, err := devices.ParseType(req.Type)
	if err != nil {
		writeError(w, hub.FieldError(hub.EInvalid, "type", "type must be one of phone, tablet, band, scale, router"))
		return
	}
	creds, err := s.opts.Hub.ProvisionDevices(r.Context(), t, req.Count)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]any{"devices": creds})
}
