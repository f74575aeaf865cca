package hub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ChallengeVerifier issues and checks the anti-automation challenges that registration,
// login and password reset require. The built-in one is a proof-of-work puzzle; an image
// captcha or a hosted captcha can take its place through hub.Options.
type ChallengeVerifier interface {
	// Issue returns the puzzle the client gets (it is sent as JSON). Level 0 is the easiest;
	// each level up should roughly double the work.
	Issue(ctx context.Context, level int) (any, error)
	// Verify checks a client's answer (the "challenge" member of the request, raw JSON) and
	// refuses answers to puzzles issued below level. It returns an *Error with code
	// challenge_failed for a bad answer.
	Verify(ctx context.Context, answer json.RawMessage, level int) error
}

// PowChallenge is the proof-of-work puzzle (ALTCHA-style): find the whole number n,
// 0 <= n <= MaxNumber, such that lower-case hex(sha256(Salt + decimal(n))) equals Challenge.
type PowChallenge struct {
	Algorithm string    `json:"algorithm"` // always "SHA-256"
	Challenge string    `json:"challenge"`
	Salt      string    `json:"salt"`
	MaxNumber int64     `json:"maxnumber"`
	Signature string    `json:"signature"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PowAnswer is what a client sends back as the request's "challenge" member.
type PowAnswer struct {
	Salt      string `json:"salt"`
	Number    int64  `json:"number"`
	Signature string `json:"signature"`
}

// SolveChallenge finds the answer to a puzzle from POST /api/v1/challenges by trying every
// number in order; it gives up when ctx ends.
func SolveChallenge(ctx context.Context, c PowChallenge) (PowAnswer, error) {
	if c.Algorithm != "" && c.Algorithm != "SHA-256" {
		return PowAnswer{}, fmt.Errorf("challenge algorithm %q is not SHA-256", c.Algorithm)
	}
	target, err := hex.DecodeString(c.Challenge)
	if err != nil || len(target) != sha256.Size {
		return PowAnswer{}, errors.New("challenge is not a hex SHA-256 digest")
	}
	buf := []byte(c.Salt)
	for n := int64(0); n <= c.MaxNumber; n++ {
		if n&0xfff == 0 && ctx.Err() != nil {
			return PowAnswer{}, fmt.Errorf("solve challenge: %w", ctx.Err())
		}
		sum := sha256.Sum256(strconv.AppendInt(buf[:len(c.Salt)], n, 10))
		if bytes.Equal(sum[:], target) {
			return PowAnswer{Salt: c.Salt, Number: n, Signature: c.Signature}, nil
		}
	}
	return PowAnswer{}, errors.New("challenge has no solution up to maxnumber")
}

// PowVerifier is the built-in ChallengeVerifier. It keeps no state per puzzle: the salt
// carries the expiry and the difficulty, and an HMAC over the challenge proves the hub made
// it. Only answers already used are remembered, until they expire, so each works once.
type PowVerifier struct {
	key   []byte
	clock Clock
	base  int64
	ttl   time.Duration

	mu   sync.Mutex
	used map[string]time.Time
}

// maxPowLevel caps the difficulty at base·2^10, about 20 s of work at the default base.
const maxPowLevel = 10

// NewPowVerifier makes the built-in verifier. base is MaxNumber at level 0: the expected work
// is base/2 hashes (about 20 ms in Go for the default 200000).
func NewPowVerifier(key []byte, clock Clock, base int64, ttl time.Duration) *PowVerifier {
	return &PowVerifier{key: key, clock: clock, base: base, ttl: ttl, used: map[string]time.Time{}}
}

func (p *PowVerifier) maxNumber(level int) int64 { return p.base << min(max(level, 0), maxPowLevel) }

// Issue makes a puzzle.
func (p *PowVerifier) Issue(_ context.Context, level int) (any, error) {
	var rb [12]byte
	_, _ = rand.Read(rb[:])
	maxN := p.maxNumber(level)
	expires := p.clock.Now().Add(p.ttl).Truncate(time.Second)
	salt := fmt.Sprintf("%s.%d.%d", hex.EncodeToString(rb[:]), expires.Unix(), maxN)
	n, err := randInt(maxN + 1)
	if err != nil {
		return nil, err
	}
	challenge := powHash(salt, n)
	return PowChallenge{
		Algorithm: "SHA-256", Challenge: challenge, Salt: salt, MaxNumber: maxN,
		Signature: p.sign(challenge), ExpiresAt: expires.UTC(),
	}, nil
}

// Verify checks an answer.
func (p *PowVerifier) Verify(_ context.Context, raw json.RawMessage, level int) error {
	fail := func(msg string) error { return FieldError(EChallengeFailed, "challenge", "%s", msg) }
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return fail("a solved challenge is required: POST /api/v1/challenges first")
	}
	var a PowAnswer
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return fail("challenge must be {\"salt\", \"number\", \"signature\"}")
	}
	parts := strings.Split(a.Salt, ".")
	if len(parts) != 3 {
		return fail("challenge salt is not one the hub issued")
	}
	expUnix, err1 := strconv.ParseInt(parts[1], 10, 64)
	maxN, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || a.Number < 0 || a.Number > maxN {
		return fail("challenge salt is not one the hub issued")
	}
	if !hmac.Equal([]byte(p.sign(powHash(a.Salt, a.Number))), []byte(a.Signature)) {
		return fail("wrong challenge answer")
	}
	now := p.clock.Now()
	expires := time.Unix(expUnix, 0)
	if !now.Before(expires) {
		return fail("challenge expired: request a new one")
	}
	if maxN < p.maxNumber(level) {
		return fail("challenge too easy after recent failures: request a new one, giving the identifier")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.used) >= 1024 {
		for k, exp := range p.used {
			if !now.Before(exp) {
				delete(p.used, k)
			}
		}
	}
	if _, dup := p.used[a.Signature]; dup {
		return fail("challenge already used: request a new one")
	}
	p.used[a.Signature] = expires
	return nil
}

func (p *PowVerifier) sign(challenge string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("devicehub-pow:" + challenge))
	return hex.EncodeToString(m.Sum(nil))
}

func powHash(salt string, n int64) string {
	sum := sha256.Sum256(strconv.AppendInt([]byte(salt), n, 10))
	return hex.EncodeToString(sum[:])
}
