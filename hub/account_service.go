package hub

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"time"
)

// AccountOptions tune accounts, codes, sessions and the anti-automation limits. Zero values
// take the defaults below.
type AccountOptions struct {
	// PublicURL is the hub's address as browsers reach it, for the emailed confirmation link.
	PublicURL string
	// CodeTTL is how long a code or link works (10 minutes).
	CodeTTL time.Duration
	// MaxCodeAttempts is how many wrong tries a code survives (5).
	MaxCodeAttempts int
	// SessionTTL is how long a login lasts (30 days).
	SessionTTL time.Duration
	// Challenges replaces the built-in proof-of-work verifier (a captcha, say).
	Challenges ChallengeVerifier
	// ChallengeBase is the proof-of-work maxnumber at the lowest difficulty (200000: about
	// 20 ms of SHA-256 in Go on average). Tests lower it.
	ChallengeBase int64
	// ChallengeTTL is how long a puzzle can be answered (5 minutes).
	ChallengeTTL time.Duration
	// IPEvery and IPBurst limit requests to the account endpoints per client IP (60 at once,
	// then one per second).
	IPEvery time.Duration
	IPBurst int
	// IdentifierEvery and IdentifierBurst limit requests per email or phone from one client IP
	// (20, then one per 15 s). Keyed by the pair, so a stranger spends only his own budget and
	// cannot make the owner's requests answer 429.
	IdentifierEvery time.Duration
	IdentifierBurst int
	// SendEvery and SendBurst limit messages (codes, notices) per identifier (3, then one a
	// minute): resending is rate-limited by this. Requests from an IP where the account has
	// logged in before draw from a budget of their own, so a stranger cannot keep the owner
	// from getting a reset code.
	SendEvery time.Duration
	SendBurst int
	// ForgotMinDuration pads password-forgotten answers so that known and unknown identifiers
	// answer after the same time (250 ms).
	ForgotMinDuration time.Duration
	// CodeMinDuration pads failed code checks (confirm, password reset) the same way: a wrong
	// try on a real code is counted in the store, one on an unknown identifier in memory (250 ms).
	CodeMinDuration time.Duration
	// LoginBackoffBase is the first lockout wait after repeated failed logins (30 s); it
	// doubles with each further failure up to 15 minutes.
	LoginBackoffBase time.Duration
}

func (o AccountOptions) withDefaults() AccountOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.CodeTTL, 10*time.Minute)
	defInt(&o.MaxCodeAttempts, 5)
	def(&o.SessionTTL, 30*24*time.Hour)
	if o.ChallengeBase <= 0 {
		o.ChallengeBase = 200_000
	}
	def(&o.ChallengeTTL, 5*time.Minute)
	def(&o.IPEvery, time.Second)
	defInt(&o.IPBurst, 60)
	def(&o.IdentifierEvery, 15*time.Second)
	defInt(&o.IdentifierBurst, 20)
	def(&o.SendEvery, time.Minute)
	defInt(&o.SendBurst, 3)
	def(&o.ForgotMinDuration, 250*time.Millisecond)
	def(&o.CodeMinDuration, 250*time.Millisecond)
	def(&o.LoginBackoffBase, 30*time.Second)
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	return o
}

// Lockout thresholds. The pair (identifier, IP) locks soon, so a guesser is slowed without
// touching the owner elsewhere; the identifier alone locks late and briefly, to slow guessing
// spread over many IPs. The identifier-wide lock does not apply from an IP where the account
// has logged in before (OWASP's "device cookie" idea with the sessions' IPs), so strangers
// cannot shut the owner out at all from where they usually log in. A password reset clears
// both.
const (
	pairLockAfter     = 5
	pairLockCeiling   = 15 * time.Minute
	globalLockAfter   = 20
	globalLockCeiling = 5 * time.Minute
	failureWindow     = time.Hour
)

// accounts is the hub's account state that lives in memory: limiters, failure counters and
// keys loaded from the store. Limits are per process (see docs/api.md).
type accounts struct {
	opts  AccountOptions
	pw    *passwordHasher
	ipLim *keyedLimiter
	idLim *keyedLimiter
	send  *keyedLimiter
	fails *failureCounter
	// phantom counts code tries where there is no live code (unknown identifier, no code
	// requested, code used or expired), so those answer exactly like a live code.
	phantom *tryCounter

	keyMu      sync.Mutex
	codeKey    []byte
	challenges ChallengeVerifier
}

func newAccounts(o AccountOptions) *accounts {
	o = o.withDefaults()
	return &accounts{
		opts:       o,
		pw:         newPasswordHasher(2 * runtime.GOMAXPROCS(0)),
		ipLim:      newKeyedLimiter(o.IPEvery, o.IPBurst),
		idLim:      newKeyedLimiter(o.IdentifierEvery, o.IdentifierBurst),
		send:       newKeyedLimiter(o.SendEvery, o.SendBurst),
		fails:      newFailureCounter(failureWindow),
		phantom:    newTryCounter(o.CodeTTL),
		challenges: o.Challenges,
	}
}

// keys loads the HMAC key for codes and builds the challenge verifier on first use (the store
// is not reachable while the hub is built).
func (h *Hub) keys(ctx context.Context) ([]byte, ChallengeVerifier, error) {
	a := h.acc
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	if a.codeKey == nil {
		k, err := h.store.ServerKey(ctx, "codes")
		if err != nil {
			return nil, nil, fmt.Errorf("load code key: %w", err)
		}
		a.codeKey = k
	}
	if a.challenges == nil {
		k, err := h.store.ServerKey(ctx, "challenges")
		if err != nil {
			return nil, nil, fmt.Errorf("load challenge key: %w", err)
		}
		a.challenges = NewPowVerifier(k, h.clock, a.opts.ChallengeBase, a.opts.ChallengeTTL)
	}
	return a.codeKey, a.challenges, nil
}

// AccountRequest carries what the account endpoints receive. Exactly one of Email, Phone and
// Identifier names the account; the rest is used by the flows that need it.
type AccountRequest struct {
	Email, Phone, Identifier string
	Password                 string
	Code                     string
	Challenge                json.RawMessage
	IP                       string
	UserAgent                string
}

func (r AccountRequest) identifier() (Identifier, error) {
	return ParseIdentifier(r.Email, r.Phone, r.Identifier)
}

// ConfirmResult tells a first confirmation from a repeated one.
type ConfirmResult struct {
	AlreadyConfirmed bool
}

// limit applies the per-IP and per-identifier request limits. The identifier's budget is per
// client IP: keyed by the identifier alone, one cheap request every 15 s from anywhere kept the
// owner's own requests answering 429. Against guessing spread over many IPs the per-code try
// cap, the identifier's message budget and the challenge level (which rises with the
// identifier's failures) stay identifier-wide.
func (h *Hub) limit(ip, ident string) error {
	now := h.clock.Now()
	if ok, d := h.acc.ipLim.allow(ip, now); !ok {
		return rateLimited(d, "too many requests from this address; retry later")
	}
	if ident != "" {
		// Identifiers never end in "|"+an IP, IPs hold no "|": the key is unambiguous.
		if ok, d := h.acc.idLim.allow(ident+"|"+ip, now); !ok {
			return rateLimited(d, "too many requests for this identifier; retry later")
		}
	}
	return nil
}

// failed counts a failure against the IP and the identifier: it raises their challenge level.
func (h *Hub) failed(ip, ident string) {
	now := h.clock.Now()
	h.acc.fails.add("ip:"+ip, now)
	if ident != "" {
		h.acc.fails.add("id:"+ident, now)
	}
}

// knownIP tells whether the account of ident (if any) has ever logged in from ip. It costs
// the same one query for an unknown identifier, and only says yes to a client at such an IP.
func (h *Hub) knownIP(ctx context.Context, ident, ip string) (bool, error) {
	if ident == "" || ip == "" {
		return false, nil
	}
	ok, err := h.store.LoggedInFrom(ctx, ident, ip)
	if err != nil {
		return false, fmt.Errorf("known address: %w", err)
	}
	return ok, nil
}

// challengeLevel is the puzzle level for a client at ip using ident: the failures of the IP
// and, unless the account has logged in from this IP before, of the identifier.
func (h *Hub) challengeLevel(ip, ident string, known bool) int {
	now := h.clock.Now()
	n := h.acc.fails.get("ip:"+ip, now).count
	if ident != "" && !known {
		n += h.acc.fails.get("id:"+ident, now).count
	}
	return n / 2
}

// IssueChallenge returns a puzzle for a client at ip; identifier (optional) is the account
// it is for, whose recent failures make the puzzle harder.
func (h *Hub) IssueChallenge(ctx context.Context, ip, identifier string) (any, error) {
	var ident string
	if strings.TrimSpace(identifier) != "" {
		id, err := ParseIdentifier("", "", identifier)
		if err != nil {
			return nil, err
		}
		ident = id.Value
	}
	if err := h.limit(ip, ""); err != nil {
		return nil, err
	}
	_, cv, err := h.keys(ctx)
	if err != nil {
		return nil, err
	}
	known, err := h.knownIP(ctx, ident, ip)
	if err != nil {
		return nil, err
	}
	return cv.Issue(ctx, h.challengeLevel(ip, ident, known))
}

// checkChallenge verifies r's answer at the level IssueChallenge used; known is knownIP's
// answer for (ident, r.IP).
func (h *Hub) checkChallenge(ctx context.Context, r AccountRequest, ident string, known bool) error {
	_, cv, err := h.keys(ctx)
	if err != nil {
		return err
	}
	if err := cv.Verify(ctx, r.Challenge, h.challengeLevel(r.IP, ident, known)); err != nil {
		h.failed(r.IP, ident)
		return err
	}
	return nil
}

// allowSend takes one message from the identifier's send budget. It is taken whether or not
// the account exists, so a 429 here tells nothing about existence. A client at an IP the
// account has logged in from (known) has a budget of its own. Each message sent restarts the
// tries of purpose for everyone alike (see checkCode).
func (h *Hub) allowSend(ident string, known bool, purpose string) error {
	key := ident
	if known {
		key += "|known"
	}
	now := h.clock.Now()
	if ok, d := h.acc.send.allow(key, now); !ok {
		return rateLimited(d, "a message was sent to this identifier recently; retry later")
	}
	h.acc.phantom.restart(purpose+":"+ident, now)
	return nil
}

// padUntil waits until d has passed since start (real time: what a client can measure), so
// that answers which touch the store for a real account and not for an unknown one take the
// same time.
func padUntil(ctx context.Context, start time.Time, d time.Duration) {
	if wait := d - time.Since(start); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// Register starts an account: it always answers the same for a new identifier and for one
// that already has an account (whose owner gets a notice instead of a code).
func (h *Hub) Register(ctx context.Context, r AccountRequest) (Identifier, error) {
	id, err := r.identifier()
	if err != nil {
		return Identifier{}, err
	}
	if err := h.acc.pw.check("password", r.Password, id.Value); err != nil {
		return Identifier{}, err
	}
	if err := h.limit(r.IP, id.Value); err != nil {
		return Identifier{}, err
	}
	known, err := h.knownIP(ctx, id.Value, r.IP)
	if err != nil {
		return Identifier{}, err
	}
	if err := h.checkChallenge(ctx, r, id.Value, known); err != nil {
		return Identifier{}, err
	}
	if err := h.allowSend(id.Value, known, PurposeConfirm); err != nil {
		return Identifier{}, err
	}
	// Hash before looking the identifier up: both paths pay for argon2.
	hash, err := h.acc.pw.hash(ctx, r.Password)
	if err != nil {
		return Identifier{}, err
	}
	acc, err := h.store.AccountByIdentifier(ctx, id.Value)
	switch {
	case ErrorCode(err) == ENotFound:
		now := h.clock.Now()
		acc = Account{ID: NewID("acc"), Identifier: id.Value, Kind: id.Kind, Status: StatusPending, PasswordHash: hash, CreatedAt: now}
		v, msg, err := h.newVerification(ctx, acc, PurposeConfirm)
		if err != nil {
			return Identifier{}, err
		}
		if err := h.store.CreateAccount(ctx, acc, v); err != nil {
			if ErrorCode(err) == EConflict { // registered in parallel: the other request won
				return id, nil
			}
			return Identifier{}, fmt.Errorf("register: %w", err)
		}
		return id, h.notify(ctx, msg)
	case err != nil:
		return Identifier{}, fmt.Errorf("register: %w", err)
	case acc.Status == StatusPending:
		// Whoever registers last sets the password; confirming still needs the mailbox or
		// phone, so a stranger's early registration cannot keep a password the owner set.
		v, msg, err := h.newVerification(ctx, acc, PurposeConfirm)
		if err != nil {
			return Identifier{}, err
		}
		if err := h.store.RestartPending(ctx, acc.ID, hash, v); err != nil {
			if ErrorCode(err) == EConflict {
				return id, nil
			}
			return Identifier{}, fmt.Errorf("register: %w", err)
		}
		return id, h.notify(ctx, msg)
	default:
		return id, h.notify(ctx, h.message(acc, "Someone tried to register with your address",
			"Someone (maybe you) tried to create a devicehub account with "+acc.Identifier+
				", which already has one. If it was you, log in, or use \"Forgot password?\". Otherwise ignore this message."))
	}
}

// ResendCode sends a new confirmation code to a pending account; it answers the same for any
// identifier.
func (h *Hub) ResendCode(ctx context.Context, r AccountRequest) (Identifier, error) {
	id, err := r.identifier()
	if err != nil {
		return Identifier{}, err
	}
	if err := h.limit(r.IP, id.Value); err != nil {
		return Identifier{}, err
	}
	// A pending account never logged in: its known-IP budget would never apply.
	if err := h.allowSend(id.Value, false, PurposeConfirm); err != nil {
		return Identifier{}, err
	}
	acc, err := h.store.AccountByIdentifier(ctx, id.Value)
	if ErrorCode(err) == ENotFound || err == nil && acc.Status != StatusPending {
		return id, nil
	}
	if err != nil {
		return Identifier{}, fmt.Errorf("resend: %w", err)
	}
	v, msg, err := h.newVerification(ctx, acc, PurposeConfirm)
	if err != nil {
		return Identifier{}, err
	}
	if err := h.store.PutVerification(ctx, v); err != nil {
		return Identifier{}, fmt.Errorf("resend: %w", err)
	}
	return id, h.notify(ctx, msg)
}

// ConfirmCode confirms a pending account with the code it was sent. A code that already
// confirmed the account answers AlreadyConfirmed, so a client that confirmed through the
// emailed link can still continue with the code.
func (h *Hub) ConfirmCode(ctx context.Context, r AccountRequest) (ConfirmResult, error) {
	start := time.Now()
	id, err := r.identifier()
	if err != nil {
		return ConfirmResult{}, err
	}
	if err := checkCodeFormat(r.Code); err != nil {
		return ConfirmResult{}, err
	}
	if err := h.limit(r.IP, id.Value); err != nil {
		return ConfirmResult{}, err
	}
	res, err := h.confirmCode(ctx, r, id)
	if err != nil {
		padUntil(ctx, start, h.acc.opts.CodeMinDuration)
	}
	return res, err
}

func (h *Hub) confirmCode(ctx context.Context, r AccountRequest, id Identifier) (ConfirmResult, error) {
	acc, v, err := h.checkCode(ctx, r, id, PurposeConfirm)
	if err != nil {
		return ConfirmResult{}, err
	}
	if !v.UsedAt.IsZero() {
		if acc.Status == StatusActive {
			return ConfirmResult{AlreadyConfirmed: true}, nil
		}
		return ConfirmResult{}, FieldError(EInvalidCode, "code", "code already used: request a new one")
	}
	return h.confirm(ctx, v)
}

// ConfirmToken confirms a pending account through the emailed link's token.
func (h *Hub) ConfirmToken(ctx context.Context, token, ip string) (ConfirmResult, error) {
	if err := h.limit(ip, ""); err != nil {
		return ConfirmResult{}, err
	}
	bad := FieldError(EInvalidCode, "token", "this link is not valid: request a new code")
	if token == "" || len(token) > 128 {
		return ConfirmResult{}, bad
	}
	key, _, err := h.keys(ctx)
	if err != nil {
		return ConfirmResult{}, err
	}
	v, err := h.store.VerificationByToken(ctx, mac(key, "link:"+token))
	if ErrorCode(err) == ENotFound {
		h.failed(ip, "")
		return ConfirmResult{}, bad
	}
	if err != nil {
		return ConfirmResult{}, fmt.Errorf("confirm link: %w", err)
	}
	if !v.UsedAt.IsZero() {
		acc, err := h.store.AccountByID(ctx, v.AccountID)
		if err != nil {
			return ConfirmResult{}, fmt.Errorf("confirm link: %w", err)
		}
		if acc.Status == StatusActive {
			return ConfirmResult{AlreadyConfirmed: true}, nil
		}
		return ConfirmResult{}, bad
	}
	if !h.clock.Now().Before(v.ExpiresAt) {
		return ConfirmResult{}, FieldError(EInvalidCode, "token", "this link has expired: request a new code")
	}
	return h.confirm(ctx, v)
}

func (h *Hub) confirm(ctx context.Context, v Verification) (ConfirmResult, error) {
	err := h.store.Confirm(ctx, v.ID, h.clock.Now())
	if ErrorCode(err) == EConflict { // used by a parallel request (the link and the code at once)
		return ConfirmResult{AlreadyConfirmed: true}, nil
	}
	if err != nil {
		return ConfirmResult{}, fmt.Errorf("confirm: %w", err)
	}
	return ConfirmResult{}, nil
}

// checkCode finds the identifier's newest verification of purpose and checks r.Code against
// it, counting tries. It returns the verification even when already used (the caller decides
// what that means).
//
// Every identifier answers a run of wrong codes the same way, whether or not it has an
// account: "wrong code" four times, "that was the last try" on the fifth, then "too many wrong
// tries" until a new code is requested or the code's lifetime (CodeTTL from the request)
// ends. A live code (unused, not expired) counts its tries in the store; anything else (no
// account, no code requested, a used or expired code) counts them in memory under the same
// key and lifetime, restarted by the same requests (allowSend). Used or expired codes still
// tell "already used" or "expired" to a caller who has the right code, which only the owner can.
func (h *Hub) checkCode(ctx context.Context, r AccountRequest, id Identifier, purpose string) (Account, Verification, error) {
	key, _, err := h.keys(ctx)
	if err != nil {
		return Account{}, Verification{}, err
	}
	acc, err := h.store.AccountByIdentifier(ctx, id.Value)
	if err != nil && ErrorCode(err) != ENotFound {
		return Account{}, Verification{}, fmt.Errorf("check code: %w", err)
	}
	var v Verification
	if err == nil {
		v, err = h.store.LatestVerification(ctx, acc.ID, purpose)
		if err != nil && ErrorCode(err) != ENotFound {
			return Account{}, Verification{}, fmt.Errorf("check code: %w", err)
		}
	}
	now := h.clock.Now()
	maxTries := h.acc.opts.MaxCodeAttempts
	var n int
	var ok bool
	if v.ID != "" && v.UsedAt.IsZero() && now.Before(v.ExpiresAt) {
		// Reserve the try before comparing: reading the count and adding to it afterwards let
		// parallel tries all pass the cap.
		n, ok, err = h.store.ReserveAttempt(ctx, v.ID, maxTries)
		if err != nil {
			return Account{}, Verification{}, fmt.Errorf("check code: %w", err)
		}
	} else {
		n, ok = h.acc.phantom.take(purpose+":"+id.Value, now, maxTries)
	}
	if !ok {
		h.failed(r.IP, id.Value)
		return Account{}, Verification{}, FieldError(EInvalidCode, "code", "too many wrong tries: request a new code")
	}
	// The MAC is computed even without a verification, so both paths do the same work.
	right := subtle.ConstantTimeCompare(mac(key, v.ID+":"+r.Code), v.CodeHash) == 1 && v.ID != ""
	// A used code proves nothing once its lifetime is over: the answer is that of a wrong one.
	if right && !v.UsedAt.IsZero() && !now.Before(v.ExpiresAt) {
		right = false
	}
	if !right {
		h.failed(r.IP, id.Value)
		if n >= maxTries {
			return Account{}, Verification{}, FieldError(EInvalidCode, "code", "wrong code; that was the last try: request a new code")
		}
		return Account{}, Verification{}, FieldError(EInvalidCode, "code", "wrong code")
	}
	if v.UsedAt.IsZero() && !now.Before(v.ExpiresAt) {
		return Account{}, Verification{}, FieldError(EInvalidCode, "code", "code expired: request a new one")
	}
	return acc, v, nil
}

func checkCodeFormat(code string) error {
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return FieldError(EInvalid, "code", "code must be the 6 digits you received")
	}
	return nil
}

// newVerification makes a code (and for email confirmations a link token) and the message
// that carries them. Only HMACs are stored: a 6-digit code has so few values that a plain
// hash is reversed at once, while the HMAC needs the server key too.
func (h *Hub) newVerification(ctx context.Context, acc Account, purpose string) (Verification, Message, error) {
	key, _, err := h.keys(ctx)
	if err != nil {
		return Verification{}, Message{}, err
	}
	n, err := randInt(1_000_000)
	if err != nil {
		return Verification{}, Message{}, err
	}
	code := fmt.Sprintf("%06d", n)
	now := h.clock.Now()
	v := Verification{ID: NewID("ver"), AccountID: acc.ID, Purpose: purpose, CreatedAt: now, ExpiresAt: now.Add(h.acc.opts.CodeTTL)}
	v.CodeHash = mac(key, v.ID+":"+code)
	mins := int(h.acc.opts.CodeTTL.Minutes())
	var subject, body string
	if purpose == PurposeReset {
		subject = "Your devicehub password reset code"
		body = fmt.Sprintf("Your devicehub code is %s. Use it within %d minutes to choose a new password. If you did not ask for this, ignore this message.", code, mins)
	} else {
		subject = "Confirm your devicehub account"
		body = fmt.Sprintf("Your devicehub code is %s. It works for %d minutes.", code, mins)
		if acc.Kind == KindEmail {
			token := RandomToken(32)
			v.TokenHash = mac(key, "link:"+token)
			body += fmt.Sprintf("\n\nOr confirm by opening this link: %s/api/v1/accounts/confirm?token=%s", h.acc.opts.PublicURL, token)
		}
		body += "\n\nIf you did not ask for this, ignore this message."
	}
	return v, h.message(acc, subject, body), nil
}

func (h *Hub) message(acc Account, subject, body string) Message {
	ch := ChannelEmail
	if acc.Kind == KindPhone {
		ch = ChannelSMS
	}
	return Message{ID: NewID("msg"), Channel: ch, To: acc.Identifier, Subject: subject, Body: body, CreatedAt: h.clock.Now()}
}

func (h *Hub) notify(ctx context.Context, m Message) error {
	if h.notifier == nil {
		return errors.New("notify: no notifier configured")
	}
	if err := h.notifier.Notify(ctx, m); err != nil {
		return fmt.Errorf("notify %s: %w", m.Channel, err)
	}
	return nil
}

// lockedFor is how long requests under key must wait after its recent failures: nothing
// below after failures, then LoginBackoffBase doubling with each further one, up to ceiling.
func (h *Hub) lockedFor(key string, after int, ceiling time.Duration) time.Duration {
	now := h.clock.Now()
	f := h.acc.fails.get(key, now)
	return max(0, f.last.Add(backoff(f, after, h.acc.opts.LoginBackoffBase, ceiling)).Sub(now))
}

// Login checks the identifier and password and opens a session. Unknown identifiers and wrong
// passwords cost the same argon2 work and get the same answer.
func (h *Hub) Login(ctx context.Context, r AccountRequest) (token string, s Session, err error) {
	id, err := r.identifier()
	if err != nil {
		return "", Session{}, err
	}
	if r.Password == "" {
		return "", Session{}, FieldError(EInvalid, "password", "password is required")
	}
	if err := h.limit(r.IP, id.Value); err != nil {
		return "", Session{}, err
	}
	known, err := h.knownIP(ctx, id.Value, r.IP)
	if err != nil {
		return "", Session{}, err
	}
	pairKey, globalKey := "login:"+id.Value+"|"+r.IP, "login:"+id.Value
	wait := h.lockedFor(pairKey, pairLockAfter, pairLockCeiling)
	if !known {
		wait = max(wait, h.lockedFor(globalKey, globalLockAfter, globalLockCeiling))
	}
	if wait > 0 {
		return "", Session{}, rateLimited(wait, "too many failed logins; wait before trying again, or reset the password")
	}
	if err := h.checkChallenge(ctx, r, id.Value, known); err != nil {
		return "", Session{}, err
	}
	acc, err := h.store.AccountByIdentifier(ctx, id.Value)
	if err != nil && ErrorCode(err) != ENotFound {
		return "", Session{}, fmt.Errorf("login: %w", err)
	}
	ok, err := h.acc.pw.verify(ctx, acc.PasswordHash, r.Password)
	if err != nil {
		return "", Session{}, fmt.Errorf("login: %w", err)
	}
	if !ok {
		now := h.clock.Now()
		h.acc.fails.add(pairKey, now)
		h.acc.fails.add(globalKey, now)
		h.failed(r.IP, id.Value)
		return "", Session{}, Errorf(EUnauthorized, "wrong identifier or password")
	}
	// Only this IP's count is cleared: the owner logging in does not forgive the guesses
	// made elsewhere (they age out, or a password reset clears them).
	h.acc.fails.reset(pairKey)
	if acc.Status != StatusActive {
		return "", Session{}, Errorf(EAccountPending, "confirm the account with the code you were sent first")
	}
	return h.newSession(ctx, acc.ID, r)
}

func (h *Hub) newSession(ctx context.Context, accountID string, r AccountRequest) (string, Session, error) {
	token := "dh_" + RandomToken(32)
	now := h.clock.Now()
	ua := r.UserAgent
	if len(ua) > 200 {
		ua = ua[:200]
	}
	s := Session{ID: NewID("ses"), AccountID: accountID, TokenHash: tokenHash(token), CreatedAt: now,
		ExpiresAt: now.Add(h.acc.opts.SessionTTL), UserAgent: ua, IP: r.IP}
	if err := h.store.CreateSession(ctx, s); err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	return token, s, nil
}

// Authenticate turns a bearer token into the principal it stands for; unauthorized when the
// token is unknown, expired or revoked.
func (h *Hub) Authenticate(ctx context.Context, token string) (Principal, error) {
	bad := Errorf(EUnauthorized, "missing, expired or revoked token: log in again")
	if !strings.HasPrefix(token, "dh_") || len(token) > 128 {
		return Principal{}, bad
	}
	s, err := h.store.SessionByToken(ctx, tokenHash(token))
	if ErrorCode(err) == ENotFound {
		return Principal{}, bad
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if !s.RevokedAt.IsZero() || !h.clock.Now().Before(s.ExpiresAt) {
		return Principal{}, bad
	}
	return Principal{AccountID: s.AccountID, SessionID: s.ID}, nil
}

// Account returns one account.
func (h *Hub) Account(ctx context.Context, accountID string) (Account, error) {
	return h.store.AccountByID(ctx, accountID)
}

// Sessions lists the account's live sessions.
func (h *Hub) Sessions(ctx context.Context, accountID string) ([]Session, error) {
	return h.store.ListSessions(ctx, accountID, h.clock.Now())
}

// RevokeSession ends one of the account's sessions (not_found for anyone else's).
func (h *Hub) RevokeSession(ctx context.Context, accountID, sessionID string) error {
	return h.store.RevokeSession(ctx, accountID, sessionID, h.clock.Now())
}

// VerifyPassword re-checks the owner's password before a sensitive action. Wrong passwords
// are throttled like logins.
func (h *Hub) VerifyPassword(ctx context.Context, accountID, password string) error {
	key := "verify:" + accountID
	if d := h.lockedFor(key, pairLockAfter, pairLockCeiling); d > 0 {
		return rateLimited(d, "too many wrong passwords; wait before trying again")
	}
	acc, err := h.store.AccountByID(ctx, accountID)
	if err != nil {
		return fmt.Errorf("verify password: %w", err)
	}
	ok, err := h.acc.pw.verify(ctx, acc.PasswordHash, password)
	if err != nil {
		return fmt.Errorf("verify password: %w", err)
	}
	if !ok {
		h.acc.fails.add(key, h.clock.Now())
		return FieldError(EUnauthorized, "password", "wrong password")
	}
	h.acc.fails.reset(key)
	return nil
}

// ForgotPassword sends a reset code when the identifier has an account. The answer, and the
// time it takes, are the same either way.
func (h *Hub) ForgotPassword(ctx context.Context, r AccountRequest) error {
	start := time.Now() // real time: the padding is about what a client can measure
	id, err := r.identifier()
	if err != nil {
		return err
	}
	if err := h.limit(r.IP, id.Value); err != nil {
		return err
	}
	known, err := h.knownIP(ctx, id.Value, r.IP)
	if err != nil {
		return err
	}
	if err := h.checkChallenge(ctx, r, id.Value, known); err != nil {
		return err
	}
	if err := h.allowSend(id.Value, known, PurposeReset); err != nil {
		return err
	}
	err = h.sendReset(ctx, id)
	padUntil(ctx, start, h.acc.opts.ForgotMinDuration)
	return err
}

func (h *Hub) sendReset(ctx context.Context, id Identifier) error {
	acc, err := h.store.AccountByIdentifier(ctx, id.Value)
	if ErrorCode(err) == ENotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forgot password: %w", err)
	}
	v, msg, err := h.newVerification(ctx, acc, PurposeReset)
	if err != nil {
		return err
	}
	if err := h.store.PutVerification(ctx, v); err != nil {
		return fmt.Errorf("forgot password: %w", err)
	}
	return h.notify(ctx, msg)
}

// ResetPassword sets a new password with the code ForgotPassword sent, confirms the account
// if it was pending (the code proves the identifier), revokes every session and lifts the
// login back-off.
func (h *Hub) ResetPassword(ctx context.Context, r AccountRequest) error {
	start := time.Now()
	id, err := r.identifier()
	if err != nil {
		return err
	}
	if err := checkCodeFormat(r.Code); err != nil {
		return err
	}
	if err := h.acc.pw.check("password", r.Password, id.Value); err != nil {
		return err
	}
	if err := h.limit(r.IP, id.Value); err != nil {
		return err
	}
	_, v, err := h.checkCode(ctx, r, id, PurposeReset)
	used := FieldError(EInvalidCode, "code", "code already used: request a new one")
	if err == nil && !v.UsedAt.IsZero() {
		err = used
	}
	if err != nil {
		padUntil(ctx, start, h.acc.opts.CodeMinDuration)
		return err
	}
	hash, err := h.acc.pw.hash(ctx, r.Password)
	if err != nil {
		return err
	}
	err = h.store.ResetPassword(ctx, v.ID, hash, h.clock.Now())
	if ErrorCode(err) == EConflict {
		return used
	}
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	h.acc.fails.reset("login:" + id.Value)
	// Pair keys of other IPs age out on their own; the owner's own pair is what matters.
	h.acc.fails.reset("login:" + id.Value + "|" + r.IP)
	return nil
}

// Outbox lists messages in the outbox, newest first; to (optional) is normalised like an
// identifier when it parses as one.
func (h *Hub) Outbox(ctx context.Context, to string, limit int) ([]Message, error) {
	if to != "" {
		if id, err := ParseIdentifier("", "", to); err == nil {
			to = id.Value
		}
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return h.store.ListOutbox(ctx, to, limit)
}

func mac(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// tokenHash is a plain SHA-256: session tokens have 256 random bits, nothing to brute-force.
func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func randInt(n int64) (int64, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		return 0, fmt.Errorf("random number: %w", err)
	}
	return v.Int64(), nil
}
