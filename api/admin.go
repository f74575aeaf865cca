package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/devicehub/devicehub/hub"
)

type messageJSON struct {
	ID        string     `json:"id"`
	Channel   string     `json:"channel"`
	To        string     `json:"to"`
	Subject   string     `json:"subject"`
	Body      string     `json:"body"`
	CreatedAt time.Time  `json:"created_at"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
}

// getOutbox lists outbox messages, newest first: ?to=<identifier> filters, ?limit= (100).
func (s *Server) getOutbox(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, hub.FieldError(hub.EInvalid, "limit", "limit must be a number from 1 to 1000"))
			return
		}
		limit = n
	}
	msgs, err := s.opts.Hub.Outbox(r.Context(), r.URL.Query().Get("to"), limit)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]messageJSON, 0, len(msgs))
	for _, m := range msgs {
		mj := messageJSON{ID: m.ID, Channel: m.Channel, To: m.To, Subject: m.Subject, Body: m.Body,
			CreatedAt: m.CreatedAt.UTC(), Status: m.Status, Attempts: m.Attempts, LastError: m.LastError}
		if !m.SentAt.IsZero() {
			t := m.SentAt.UTC()
			mj.SentAt = &t
		}
		out = append(out, mj)
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out})
}
