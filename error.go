// Package custody holds the domain vocabulary shared by every Custody service:
// the one error type every layer returns, and the caller identity carried in a
// request's context.
//
// Services live in subpackages named after the Azure service they stand in for
// (identity, rm, and later keyvault and batch); adapters around them are
// sqlstore (the SQL database), httpapi (Azure's wire protocols) and cli (the
// az-style command line). Wiring happens only in cmd/custody.
package custody

import (
	"errors"
	"fmt"
)

// Kind classifies an error for transport. httpapi maps each Kind to exactly
// one HTTP status; nothing else decides status codes.
type Kind int

const (
	// KindInternal is any failure the caller cannot fix. Its details go to
	// logs only; the caller sees a generic message.
	KindInternal           Kind = iota
	KindInvalid                 // 400: the request is malformed or breaks a rule.
	KindUnauthenticated         // 401: no valid token.
	KindForbidden               // 403: authenticated, but not allowed.
	KindNotFound                // 404: the named thing does not exist.
	KindMethodNotAllowed        // 405: the path exists but not with this method.
	KindConflict                // 409: the request clashes with current state.
	KindPreconditionFailed      // 412: an If-Match or similar did not hold.
	KindTooLarge                // 413: the body is larger than allowed.
	KindUnavailable             // 503: a dependency is down; retry later.
)

// Error is the one error type of Custody. Code is the Azure error code the
// wire protocol shows (for example "ResourceGroupNotFound"); Message is safe to
// show to the caller and should say what went wrong, which thing, and what to
// do next. Inner is an optional inner error code (Key Vault's
// "ForbiddenByPolicy", for example).
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Inner   string
	// Target optionally names the field or resource the error concerns.
	Target string
	// Err is an optional cause kept for logs; it is never shown to callers.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind and Azure code.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Internal wraps an unexpected failure. The cause is kept for logs only.
func Internal(err error, format string, args ...any) *Error {
	return &Error{Kind: KindInternal, Code: "InternalServerError", Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorKind returns the Kind of err, or KindInternal if err is not an *Error.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// ErrorCode returns the Azure code of err, or "InternalServerError".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	return "InternalServerError"
}

// ErrorMessage returns the caller-safe message of err. Internal errors give a
// generic message so that no detail leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != KindInternal {
		return e.Message
	}
	return "The server encountered an internal error. The request can be retried; if it keeps failing, see the server log."
}

// IsNotFound reports whether err is a KindNotFound error.
func IsNotFound(err error) bool { return err != nil && ErrorKind(err) == KindNotFound }
