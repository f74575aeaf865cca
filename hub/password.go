package hub

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// OWASP's argon2id recommendation (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16

	minPasswordLen = 8
	// maxPasswordBytes stops megabyte "passwords" from being hashed.
	maxPasswordBytes = 256
)

// commonPasswords is a small built-in deny list (most frequent leaked passwords of 8+
// characters). It catches the worst choices without shipping a large file.
const commonPasswords = `12345678 123456789 1234567890 12345678910 password password1 password12
password123 passw0rd p@ssw0rd p@ssword qwertyuiop qwerty123 qwerty12 qwertyui 1q2w3e4r 1q2w3e4r5t
1qaz2wsx 1qazxsw2 zaq12wsx iloveyou iloveyou1 sunshine princess football baseball welcome1
welcome123 admin123 administrator letmein1 letmein123 trustno1 superman batman123 11111111
00000000 88888888 87654321 123123123 abc12345 abcd1234 asdfghjkl asdf1234 zxcvbnm1 starwars
dragon12 monkey12 master12 whatever computer michael1 jennifer charlie1 football1 baseball1
changeme changeme1 devicehub devicehub1 secret123 shadow12 michelle corvette mustang1 internet
qazwsxedc 987654321 q1w2e3r4 q1w2e3r4t5 aa123456 a1b2c3d4 1234abcd 12qwaszx 123qweasd`

// passwordHasher hashes and checks passwords with argon2id. Hashes are PHC strings, so the
// parameters travel with each hash and can be raised later without breaking old ones.
type passwordHasher struct {
	common map[string]bool
	// slots bounds concurrent hashes: each takes 19 MiB, and a burst of logins must not
	// exhaust memory.
	slots chan struct{}
	dummy string
}

func newPasswordHasher(concurrency int) *passwordHasher {
	h := &passwordHasher{common: map[string]bool{}, slots: make(chan struct{}, max(1, concurrency))}
	for _, p := range strings.Fields(commonPasswords) {
		h.common[p] = true
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	// Unknown accounts are checked against this so they cost the same as known ones.
	h.dummy = h.hashNow(string(b[:]))
	return h
}

// check refuses passwords that are too short, too long or common.
func (h *passwordHasher) check(field, pw, identifier string) error {
	if utf8.RuneCountInString(pw) < minPasswordLen {
		return FieldError(EInvalid, field, "password must have at least %d characters", minPasswordLen)
	}
	if len(pw) > maxPasswordBytes {
		return FieldError(EInvalid, field, "password must be at most %d bytes", maxPasswordBytes)
	}
	if h.common[strings.ToLower(pw)] || strings.EqualFold(pw, identifier) {
		return FieldError(EInvalid, field, "password is too common; choose another")
	}
	return nil
}

func (h *passwordHasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for password hashing: %w", ctx.Err())
	}
}

func (h *passwordHasher) release() { <-h.slots }

// hash returns the PHC string of pw with a fresh salt.
func (h *passwordHasher) hash(ctx context.Context, pw string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hashNow(pw), nil
}

func (h *passwordHasher) hashNow(pw string) string {
	salt := make([]byte, argonSaltLen)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key))
}

// verify reports whether pw matches encoded. An empty encoded (unknown account) is checked
// against the dummy hash and always fails, taking the same time.
func (h *passwordHasher) verify(ctx context.Context, encoded, pw string) (bool, error) {
	known := encoded != ""
	if !known {
		encoded = h.dummy
	}
	var (
		version         int
		mem             uint32
		iters           uint32
		threads         uint8
		saltB64, keyB64 string
	)
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("password hash: not an argon2id PHC string")
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("password hash: version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iters, &threads); err != nil {
		return false, fmt.Errorf("password hash: parameters %q: %w", parts[3], err)
	}
	saltB64, keyB64 = parts[4], parts[5]
	salt, err := base64.RawStdEncoding.DecodeString(saltB64)
	if err != nil {
		return false, fmt.Errorf("password hash: salt: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(keyB64)
	if err != nil {
		return false, fmt.Errorf("password hash: key: %w", err)
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(pw), salt, iters, mem, threads, uint32(len(want)))
	h.release()
	return subtle.ConstantTimeCompare(got, want) == 1 && known, nil
}
