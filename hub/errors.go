package hub

import (
	"errors"
	"fmt"
)

// Error codes. HTTP maps them to statuses in api/errors.go, MQTT to reason codes in broker.
const (
	ENotFound       = "not_found"
	EConflict       = "conflict"
	EDeviceLocked   = "device_locked"
	ENotSameAccount = "not_same_account"
	ENotBound       = "not_bound"
	ENotPairable    = "not_pairable"
	EInvalid        = "invalid"
	EInvalidCode    = "invalid_code"
	EUnauthorized   = "unauthorized"
	EForbidden      = "forbidden"
	ERateLimited    = "rate_limited"
	EStale          = "stale_version"
	EInternal       = "internal"
)

// Error is a domain error a client may see: a code from the list above, a message for people,
// and the request field it is about, if any.
type Error struct {
	Code    string
	Message string
	Field   string
	// RetryAfter is set on rate_limited errors: how long the caller should wait.
	RetryAfterSeconds int
	// CurrentVersion is set on stale_version errors: the version the write must be based on.
	CurrentVersion *int64
	// Err is the cause, for logs; never shown to clients.
	Err error
}

func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error with a code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError builds an invalid-input Error about one request field.
func FieldError(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, EInternal for anything that is not a hub Error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// AsError returns err's hub Error, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
