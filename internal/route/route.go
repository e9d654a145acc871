// Package route is Moat's route table and request pipeline. For every
// request it runs, in order: authentication (the listener's), matching,
// the untrusted gate, project selection, authorization (authz.Authorize,
// from the action's declared entitlement), the body limit, the handler, and
// finally logging and audit. Handlers receive a request that has already
// been authorized.
package route

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/response"
)

// DefaultMaxBody is the request body limit of actions that set none.
const DefaultMaxBody = 1 << 20

// Action is one method of an endpoint.
type Action struct {
	Handler func(*Request) response.Response
	// Entitlement is checked on the entity Entity returns (or on the server
	// when Entity is nil). Every action must declare one unless it is
	// AllowUntrusted.
	Entitlement authz.Entitlement
	Entity      func(*Request) authz.Entity
	// AllowUntrusted lets callers without credentials in; the handler then
	// shapes what they see.
	AllowUntrusted bool
	// AllProjects allows ?all-projects=true.
	AllProjects bool
	// MaxBody overrides DefaultMaxBody.
	MaxBody int64
}

// Endpoint is a path pattern with its actions. Path segments in braces are
// variables, e.g. /1.0/projects/{name}.
type Endpoint struct {
	Path                          string
	Get, Put, Post, Patch, Delete *Action
	segments                      []string
}

func (e *Endpoint) action(method string) (*Action, bool) {
	switch method {
	case http.MethodGet, http.MethodHead:
		return e.Get, true
	case http.MethodPut:
		return e.Put, true
	case http.MethodPost:
		return e.Post, true
	case http.MethodPatch:
		return e.Patch, true
	case http.MethodDelete:
		return e.Delete, true
	}
	return nil, false
}

// Actions lists the endpoint's methods and actions, for tests that walk the
// route table.
func (e *Endpoint) Actions() map[string]*Action {
	out := map[string]*Action{}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		if a, _ := e.action(m); a != nil {
			out[m] = a
		}
	}
	return out
}

// Request is an authenticated, matched and authorized API request.
type Request struct {
	HTTP     *http.Request
	W        http.ResponseWriter
	Identity *identity.Identity
	// Project is ?project= (default "default").
	Project string
	// AllProjects is ?all-projects=true.
	AllProjects bool
	vars        map[string]string
}

// Var returns a path variable.
func (r *Request) Var(name string) string { return r.vars[name] }

// Query returns a query parameter.
func (r *Request) Query(name string) string { return r.HTTP.URL.Query().Get(name) }

// Recursion returns ?recursion= as a number (0 when absent or invalid).
func (r *Request) Recursion() int {
	switch r.Query("recursion") {
	case "1":
		return 1
	case "2":
		return 2
	}
	return 0
}

// DecodeJSON reads the body into v. Unknown fields are ignored, as LXD
// does, so clients can echo read-only fields back; a malformed body or a
// wrong type is a 400 naming the problem, an oversized one a 413.
func (r *Request) DecodeJSON(v any) error {
	err := json.NewDecoder(r.HTTP.Body).Decode(v)
	var maxErr *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &maxErr):
		return errdefs.TooLargef("Request body is larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return errdefs.Invalidf("Request body is empty: a JSON object is required")
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "(body)"
		}
		return errdefs.Invalidf("Invalid type for field %q: got JSON %s, want %s", field, typeErr.Value, typeErr.Type)
	}
	return errdefs.Invalidf("%s", err.Error())
}

// CheckETag compares the If-Match header with the ETag of current (412 on
// mismatch, no check when the header is absent).
func (r *Request) CheckETag(current any) error {
	match := strings.Trim(r.HTTP.Header.Get("If-Match"), `"`)
	if match == "" {
		return nil
	}
	have, err := response.ETag(current)
	if err != nil {
		return err
	}
	if have != match {
		return errdefs.PreconditionFailedf("ETag doesn't match: %s vs %s", have, match)
	}
	return nil
}
