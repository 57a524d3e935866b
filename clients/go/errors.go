package livehub

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the protocol (docs/protocol.md): the Code of an *Error.
const (
	CodeBadJSON              = "bad_json"
	CodeBadCommand           = "bad_command"
	CodeUnknownCommand       = "unknown_command"
	CodeBadChannel           = "bad_channel"
	CodeForbidden            = "forbidden"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeRateLimited          = "rate_limited"
	CodeUnauthorized         = "unauthorized"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeUpgradeRequired      = "upgrade_required"
	// CodeTooLarge is this package's code for HTTP 413, which the server
	// answers without a JSON body (the request was over max-message-size).
	CodeTooLarge = "too_large"
)

// WebSocket close codes the server uses (RFC 6455 and livehub's own).
const (
	CloseNormal         = 1000
	CloseGoingAway      = 1001 // the server shuts down
	CloseProtocolError  = 1002
	CloseNoStatus       = 1005 // a close frame without a code
	CloseAbnormal       = 1006 // the connection ended without a close frame
	CloseInvalidPayload = 1007 // invalid UTF-8
	ClosePolicy         = 1008 // e.g. "pong timeout"
	CloseTooBig         = 1009 // a message over max-message-size
	CloseUnauthorized   = 4001 // bad token, no connect in time: never reconnected
	CloseTokenExpired   = 4002 // the token's exp passed without a refresh
	CloseSlowConsumer   = 4008 // the client did not read fast enough
	CloseRateLimited    = 4029 // too many commands refused in a row
)

// ErrClosed is returned by the methods of a Client after Close.
var ErrClosed = errors.New("livehub: client closed")

// ErrConnectionLost is returned (wrapped) by a request whose connection ended
// before its reply came. A Publish that fails so may or may not have been
// published; it is not sent again.
var ErrConnectionLost = errors.New("livehub: connection lost before the reply")

// Error is an error the server answered: an HTTP error response (Status is
// its status code) or an "error" reply to a WebSocket command (Status 0).
// Programs match on Code, one of the Code* constants; Message is for people.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	switch {
	case e.Status != 0 && e.Message != "":
		return fmt.Sprintf("livehub: %d %s: %s", e.Status, e.Code, e.Message)
	case e.Status != 0:
		return fmt.Sprintf("livehub: %d %s", e.Status, e.Code)
	case e.Message != "":
		return fmt.Sprintf("livehub: %s: %s", e.Code, e.Message)
	}
	return "livehub: " + e.Code
}

// Is reports whether target is an *Error with the same Code (and the same
// Status, where target has one), so that errors.Is(err,
// &livehub.Error{Code: livehub.CodeForbidden}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Status == 0 || t.Status == e.Status)
}

// CloseError says why a WebSocket connection ended: the code and reason of
// the server's close frame, CloseAbnormal when the connection dropped
// without one, or a code the client itself closed with after a protocol
// violation by the server (CloseProtocolError, CloseInvalidPayload,
// CloseTooBig).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("livehub: connection closed with %d", e.Code)
	}
	return fmt.Sprintf("livehub: connection closed with %d %s", e.Code, e.Reason)
}

// Is reports whether target is a *CloseError with the same code.
func (e *CloseError) Is(target error) bool {
	t, ok := target.(*CloseError)
	return ok && t.Code == e.Code
}

// ErrorCode returns the Code of the *Error in err's chain, or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// CloseCode returns the Code of the *CloseError in err's chain, or 0.
func CloseCode(err error) int {
	var e *CloseError
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// codeOfStatus is the code of an HTTP error response that has no JSON body.
func codeOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadCommand
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusUpgradeRequired:
		return CodeUpgradeRequired
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	if status >= 500 {
		return CodeInternal
	}
	return fmt.Sprintf("http_%d", status)
}
