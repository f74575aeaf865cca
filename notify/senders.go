package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/devicehub/devicehub/hub"
)

// Webhook POSTs each message as JSON to an SMS (or email) gateway:
//
//	{"id": "msg_…", "channel": "sms", "to": "+14155550100", "subject": "…", "body": "…"}
//
// with an Idempotency-Key header equal to the id, so a gateway can drop the duplicates that
// retries after a lost answer produce. Any 2xx answer is success.
type Webhook struct {
	URL    string
	Client *http.Client
}

// Send posts m.
func (w Webhook) Send(ctx context.Context, m hub.Message) error {
	body, err := json.Marshal(map[string]string{"id": m.ID, "channel": m.Channel, "to": m.To, "subject": m.Subject, "body": m.Body})
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", m.ID)
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook: %s answered %s: %s", w.URL, resp.Status, bytes.TrimSpace(snippet))
	}
	return nil
}

// SMTP sends email messages through a mail server with github.com/wneessen/go-mail
// (STARTTLS when the server offers it). It cannot send SMS.
type SMTP struct {
	Host, Username, Password, From string
	Port                           int
}

// Send mails m.
func (s SMTP) Send(ctx context.Context, m hub.Message) error {
	if m.Channel != hub.ChannelEmail {
		return fmt.Errorf("smtp: cannot send %s messages; use the webhook driver for SMS", m.Channel)
	}
	msg := mail.NewMsg()
	if err := msg.From(s.From); err != nil {
		return fmt.Errorf("smtp from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("smtp to: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(m.ID + "@devicehub")
	msg.SetBodyString(mail.TypeTextPlain, m.Body)
	opts := []mail.Option{mail.WithPort(s.Port), mail.WithTLSPolicy(mail.TLSOpportunistic)}
	if s.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(s.Username), mail.WithPassword(s.Password))
	}
	c, err := mail.NewClient(s.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	return nil
}
