package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// routeAccounts registers the account, session and password endpoints (docs/api.md).
func (s *Server) routeAccounts() {
	s.handle("POST /api/v1/challenges", s.postChallenge)
	s.handle("POST /api/v1/accounts", s.postAccount)
	s.handle("POST /api/v1/accounts/confirm", s.postConfirm)
	s.handle("GET /api/v1/accounts/confirm", s.getConfirm)
	s.handle("POST /api/v1/accounts/resend", s.postResend)
	s.handle("POST /api/v1/sessions", s.postSession)
	s.mux.HandleFunc("GET /api/v1/sessions", s.requireAccount(s.getSessions))
	s.mux.HandleFunc("DELETE /api/v1/sessions/{id}", s.requireAccount(s.deleteSession))
	s.mux.HandleFunc("GET /api/v1/me", s.requireAccount(s.getMe))
	s.handle("POST /api/v1/password/forgot", s.postForgot)
	s.handle("POST /api/v1/password/reset", s.postReset)
	s.mux.HandleFunc("GET /api/v1/admin/outbox", s.requireAdmin(s.getOutbox))
}

// accountRequest is every account endpoint's body; exactly one of email, phone and identifier
// names the account. (Not an embedded struct: decode errors would name the Go type.)
type accountRequest struct {
	Email      string          `json:"email,omitempty"`
	Phone      string          `json:"phone,omitempty"`
	Identifier string          `json:"identifier,omitempty"`
	Password   string          `json:"password,omitempty"`
	Code       string          `json:"code,omitempty"`
	Challenge  json.RawMessage `json:"challenge,omitempty"`
}

func (s *Server) decodeAccountRequest(w http.ResponseWriter, r *http.Request) (hub.AccountRequest, error) {
	var req accountRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return hub.AccountRequest{}, err
	}
	return hub.AccountRequest{
		Email: req.Email, Phone: req.Phone, Identifier: req.Identifier,
		Password: req.Password, Code: req.Code, Challenge: req.Challenge,
		IP: clientIP(r), UserAgent: r.UserAgent(),
	}, nil
}

// sentResponse is the answer to registration and resend: the same whether or not the
// identifier already had an account.
type sentResponse struct {
	Status     string `json:"status"`
	Identifier string `json:"identifier"`
	Kind       string `json:"kind"`
	Message    string `json:"message"`
}

func (s *Server) postChallenge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Identifier string `json:"identifier"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	c, err := s.opts.Hub.IssueChallenge(r.Context(), clientIP(r), req.Identifier)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) postAccount(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAccountRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := s.opts.Hub.Register(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, sentResponse{Status: "code_sent", Identifier: id.Value, Kind: id.Kind,
		Message: "a code was sent to " + id.Value + "; confirm with POST /api/v1/accounts/confirm"})
}

func (s *Server) postResend(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAccountRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := s.opts.Hub.ResendCode(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, sentResponse{Status: "code_sent", Identifier: id.Value, Kind: id.Kind,
		Message: "if " + id.Value + " has an account waiting for confirmation, a new code was sent to it"})
}

type confirmResponse struct {
	Status  string `json:"status"` // confirmed or already_confirmed
	Message string `json:"message"`
}

func writeConfirm(w http.ResponseWriter, res hub.ConfirmResult) {
	if res.AlreadyConfirmed {
		writeJSON(w, http.StatusOK, confirmResponse{Status: "already_confirmed", Message: "account already confirmed"})
		return
	}
	writeJSON(w, http.StatusOK, confirmResponse{Status: "confirmed", Message: "account confirmed; log in with POST /api/v1/sessions"})
}

func (s *Server) postConfirm(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAccountRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := s.opts.Hub.ConfirmCode(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeConfirm(w, res)
}

func (s *Server) getConfirm(w http.ResponseWriter, r *http.Request) {
	res, err := s.opts.Hub.ConfirmToken(r.Context(), r.URL.Query().Get("token"), clientIP(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeConfirm(w, res)
}

type sessionJSON struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UserAgent string    `json:"user_agent"`
	IP        string    `json:"ip"`
	Current   bool      `json:"current"`
}

func toSessionJSON(s hub.Session, current string) sessionJSON {
	return sessionJSON{ID: s.ID, CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC(), UserAgent: s.UserAgent, IP: s.IP, Current: s.ID == current}
}

func (s *Server) postSession(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAccountRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	token, sess, err := s.opts.Hub.Login(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Token     string      `json:"token"`
		AccountID string      `json:"account_id"`
		Session   sessionJSON `json:"session"`
	}{token, sess.AccountID, toSessionJSON(sess, sess.ID)})
}

func (s *Server) getSessions(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	list, err := s.opts.Hub.Sessions(r.Context(), p.AccountID)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]sessionJSON, 0, len(list))
	for _, sess := range list {
		out = append(out, toSessionJSON(sess, p.SessionID))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	if err := s.opts.Hub.RevokeSession(r.Context(), p.AccountID, r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getMe(w http.ResponseWriter, r *http.Request, p hub.Principal) {
	acc, err := s.opts.Hub.Account(r.Context(), p.AccountID)
	if err != nil {
		writeError(w, err)
		return
	}
	out := map[string]any{
		"id": acc.ID, "identifier": acc.Identifier, "kind": acc.Kind, "status": acc.Status,
		"created_at": acc.CreatedAt.UTC(), "session_id": p.SessionID,
	}
	if !acc.ConfirmedAt.IsZero() {
		out["confirmed_at"] = acc.ConfirmedAt.UTC()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) postForgot(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAccountRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.opts.Hub.ForgotPassword(r.Context(), req); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "code_sent",
		"message": "if this identifier has an account, a code was sent to it; use it with POST /api/v1/password/reset"})
}

func (s *Server) postReset(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAccountRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.opts.Hub.ResetPassword(r.Context(), req); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "password_reset",
		"message": "password changed and every session logged out; log in again"})
}
