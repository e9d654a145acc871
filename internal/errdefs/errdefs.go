// Package errdefs defines the error classes of Moat. Code anywhere wraps one
// of these sentinels with %w and a message for the operator; the HTTP layer
// maps the class to a status code once, at the boundary.
package errdefs

import (
	"errors"
	"fmt"
	"net/http"
)

// The error classes.
var (
	ErrInvalid        = errors.New("invalid")
	ErrNotFound       = errors.New("not found")
	ErrConflict       = errors.New("conflict")
	ErrForbidden      = errors.New("forbidden")
	ErrPrecondition   = errors.New("precondition failed")
	ErrNotImplemented = errors.New("not implemented")
	ErrUnavailable    = errors.New("unavailable")
	ErrTooLarge       = errors.New("request too large")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrTooManyRequest = errors.New("too many requests")
)

// HTTPStatus maps an error to the status code the API answers with.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrPrecondition):
		return http.StatusPreconditionFailed
	case errors.Is(err, ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrTooManyRequest):
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// classed is an error whose text is only the operator-facing message and
// whose class is found by errors.Is.
type classed struct {
	class error
	msg   string
}

func (c *classed) Error() string { return c.msg }
func (c *classed) Unwrap() error { return c.class }

func newf(class error, format string, args ...any) error {
	return &classed{class: class, msg: fmt.Sprintf(format, args...)}
}

// Invalidf is a 400 error: the request is wrong and changed nothing.
func Invalidf(format string, args ...any) error { return newf(ErrInvalid, format, args...) }

// NotFoundf is a 404 error.
func NotFoundf(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// Conflictf is a 409 error.
func Conflictf(format string, args ...any) error { return newf(ErrConflict, format, args...) }

// Forbiddenf is a 403 error.
func Forbiddenf(format string, args ...any) error { return newf(ErrForbidden, format, args...) }

// PreconditionFailedf is a 412 error.
func PreconditionFailedf(format string, args ...any) error {
	return newf(ErrPrecondition, format, args...)
}

// NotImplementedf is a 501 error.
func NotImplementedf(format string, args ...any) error {
	return newf(ErrNotImplemented, format, args...)
}

// Unavailablef is a 503 error.
func Unavailablef(format string, args ...any) error { return newf(ErrUnavailable, format, args...) }

// TooLargef is a 413 error.
func TooLargef(format string, args ...any) error { return newf(ErrTooLarge, format, args...) }
