// Package response renders API responses: LXD's sync, async and error
// envelopes. Errors are mapped to HTTP status codes here, once.
package response

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/errdefs"
)

// Response is what a handler returns.
type Response interface {
	Render(w http.ResponseWriter) error
	// Code is the HTTP status the response carries, for logs and audit.
	Code() int
}

type syncResponse struct {
	metadata any
	etag     string
	location string
	code     int
}

// Sync is a 200 response with metadata and, when etagOf is non-nil, an ETag
// computed from it.
func Sync(metadata any, etagOf any) Response {
	r := &syncResponse{metadata: metadata, code: http.StatusOK}
	if etagOf != nil {
		r.etag, _ = ETag(etagOf)
	}
	return r
}

// Created is a 201 response with a Location header and null metadata.
func Created(location string) Response {
	return &syncResponse{location: location, code: http.StatusCreated}
}

// EmptySync is a 200 response with null metadata.
func EmptySync() Response { return &syncResponse{code: http.StatusOK} }

func (s *syncResponse) Code() int { return s.code }

func (s *syncResponse) Render(w http.ResponseWriter) error {
	if s.etag != "" {
		w.Header().Set("ETag", `"`+s.etag+`"`)
	}
	if s.location != "" {
		w.Header().Set("Location", s.location)
	}
	return write(w, s.code, api.ResponseRaw{
		Type: api.SyncResponse, Status: api.Success.String(), StatusCode: int(api.Success), Metadata: s.metadata,
	})
}

type asyncResponse struct {
	op  *api.Operation
	url string
}

// Async is a 202 response for a background operation.
func Async(op *api.Operation) Response {
	return &asyncResponse{op: op, url: "/1.0/operations/" + op.ID}
}

func (a *asyncResponse) Code() int { return http.StatusAccepted }

func (a *asyncResponse) Render(w http.ResponseWriter) error {
	w.Header().Set("Location", a.url)
	return write(w, http.StatusAccepted, api.ResponseRaw{
		Type: api.AsyncResponse, Status: api.OperationCreated.String(), StatusCode: int(api.OperationCreated),
		Operation: a.url, Metadata: a.op,
	})
}

type errorResponse struct {
	code int
	msg  string
	hdr  http.Header
}

// Error maps err to its status code. Internal errors keep their message: it
// is the operator's own daemon, and hiding the cause only slows them down.
// A bare sentinel (no message of its own) shows Go's status text.
func Error(err error) Response {
	code := errdefs.HTTPStatus(err)
	msg := err.Error()
	for _, s := range []error{errdefs.ErrNotFound, errdefs.ErrForbidden, errdefs.ErrNotImplemented} {
		if err == s {
			msg = http.StatusText(code)
		}
	}
	r := &errorResponse{code: code, msg: msg}
	var h interface{ Header() http.Header }
	if errors.As(err, &h) {
		r.hdr = h.Header()
	}
	return r
}

func (e *errorResponse) Code() int { return e.code }

func (e *errorResponse) Render(w http.ResponseWriter) error {
	for k, v := range e.hdr {
		w.Header()[k] = v
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	return write(w, e.code, api.ResponseRaw{Type: api.ErrorResponse, ErrorCode: e.code, Error: e.msg})
}

// Manual lets a handler take over the connection (websockets).
type Manual func(w http.ResponseWriter) error

// Render runs the handler.
func (m Manual) Render(w http.ResponseWriter) error { return m(w) }

// Code reports 101: the connection was handed over.
func (m Manual) Code() int { return http.StatusSwitchingProtocols }

func write(w http.ResponseWriter, code int, body api.ResponseRaw) error {
	buf, err := json.Marshal(body)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, err = w.Write(append(buf, '\n'))
	return err
}

// ETag is the hex sha256 of the JSON encoding of v.
func ETag(v any) (string, error) {
	buf, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:]), nil
}

// List answers a collection GET the LXD way: the objects themselves with
// recursion, their URLs without; an empty collection is [], never null.
func List[T any](recursive bool, objects []T, url func(T) string) Response {
	if recursive {
		if objects == nil {
			objects = []T{}
		}
		return Sync(objects, nil)
	}
	urls := make([]string, 0, len(objects))
	for _, o := range objects {
		urls = append(urls, url(o))
	}
	return Sync(urls, nil)
}
