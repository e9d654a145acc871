package route

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/response"
)

// Record is what the router reports about every request, for the audit log.
type Record struct {
	Time     time.Time
	Identity *identity.Identity
	Method   string
	Path     string
	Query    string
	Status   int
	Duration time.Duration
	// Denial is the reason a request was refused before its handler ran.
	Denial string
}

// Router dispatches requests through the pipeline described in the package
// comment.
type Router struct {
	endpoints []*Endpoint
	// Authenticate identifies the caller (the listener's job).
	Authenticate func(*http.Request) *identity.Identity
	// Audit receives a record of every request.
	Audit func(Record)
	// Denied is told about authorization failures (security events).
	Denied func(id *identity.Identity, r *http.Request, ent authz.Entitlement, e authz.Entity)
	Log    *slog.Logger

	shuttingDown atomic.Bool
}

// NewRouter builds a router over the given endpoints.
func NewRouter(endpoints []*Endpoint) *Router {
	rt := &Router{}
	for _, e := range endpoints {
		e.segments = strings.Split(strings.Trim(e.Path, "/"), "/")
		rt.endpoints = append(rt.endpoints, e)
	}
	return rt
}

// Endpoints returns the route table.
func (rt *Router) Endpoints() []*Endpoint { return rt.endpoints }

// ShutDown makes the router refuse changes with 503 while the daemon stops.
func (rt *Router) ShutDown() { rt.shuttingDown.Store(true) }

func (rt *Router) match(path string) (*Endpoint, map[string]string) {
	if path != "/" {
		path = strings.TrimSuffix(path, "/")
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, e := range rt.endpoints {
		if len(e.segments) != len(segs) {
			continue
		}
		var vars map[string]string
		ok := true
		for i, s := range e.segments {
			if len(s) > 1 && s[0] == '{' && s[len(s)-1] == '}' {
				if segs[i] == "" {
					ok = false
					break
				}
				if vars == nil {
					vars = map[string]string{}
				}
				vars[s[1:len(s)-1]] = segs[i]
				continue
			}
			if s != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return e, vars
		}
	}
	return nil, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (websocket hijacking) reach the
// underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ServeHTTP runs the pipeline.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	id := &identity.Identity{}
	denial := ""
	defer func() {
		if p := recover(); p != nil {
			rt.Log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if sw.status == 0 {
				_ = response.Error(fmt.Errorf("internal error: %v", p)).Render(sw)
			}
			denial = "panic"
		}
		rec := Record{Time: start, Identity: id, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Status: sw.status, Duration: time.Since(start), Denial: denial}
		if rt.Audit != nil {
			rt.Audit(rec)
		}
		if rt.Log.Enabled(context.Background(), slog.LevelDebug) {
			rt.Log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"user", id.Username, "protocol", id.Protocol, "address", id.Address, "duration", rec.Duration)
		}
	}()
	if rt.Authenticate != nil {
		id = rt.Authenticate(r)
	}
	resp, why := rt.dispatch(sw, r, id)
	denial = why
	if err := resp.Render(sw); err != nil {
		rt.Log.Debug("writing response failed", "path", r.URL.Path, "err", err)
	}
}

func (rt *Router) dispatch(w http.ResponseWriter, r *http.Request, id *identity.Identity) (response.Response, string) {
	e, vars := rt.match(r.URL.Path)
	if e == nil {
		return response.Error(errdefs.NotFoundf("not found")), "unknown endpoint"
	}
	act, known := e.action(r.Method)
	if !known {
		return response.Error(errdefs.NotFoundf("Method %q not found", r.Method)), "unknown method"
	}
	if act == nil {
		return response.Error(errdefs.NotImplementedf("not implemented")), "method not implemented"
	}
	if rt.shuttingDown.Load() && r.Method != http.MethodGet && r.Method != http.MethodHead && !strings.HasPrefix(r.URL.Path, "/1.0/operations") {
		return response.Error(errdefs.Unavailablef("Moat is shutting down")), "shutting down"
	}
	// A client that says it expects to be authenticated gets a hard refusal
	// instead of silently reduced, untrusted data.
	if !id.Trusted() && (!act.AllowUntrusted || r.Header.Get("X-LXD-authenticated") != "") {
		return response.Error(errdefs.Forbiddenf("not authorized")), "untrusted"
	}
	req := &Request{HTTP: r, W: w, Identity: id, Project: "default", vars: vars}
	if id.DefaultProject != "" {
		req.Project = id.DefaultProject
	}
	q := r.URL.Query()
	if p := q.Get("project"); p != "" {
		if err := config.Name(p); err != nil {
			return response.Error(errdefs.Invalidf("Invalid project name %q: %v", p, err)), "bad project"
		}
		req.Project = p
	}
	if all, _ := config.ParseBool(q.Get("all-projects")); all {
		if !act.AllProjects {
			return response.Error(errdefs.Invalidf("All projects queries are not supported")), "bad all-projects"
		}
		req.AllProjects = true
	}
	// The project gate: a confined caller that names a project it cannot
	// see learns nothing about it, whichever endpoint it asks (404, as for
	// a missing one). Project-scoped entities are checked again below.
	if q.Get("project") != "" && !req.AllProjects && id.Trusted() {
		if err := rt.authorize(id, r, authz.CanView, authz.Entity{Type: authz.Project, Name: req.Project, Project: req.Project}); err != nil {
			return response.Error(err), "authz: " + err.Error()
		}
	}
	if act.Entitlement != "" && id.Trusted() {
		ent := authz.Entity{Type: authz.Server}
		if act.Entity != nil {
			ent = act.Entity(req)
		}
		if err := rt.authorize(id, r, act.Entitlement, ent); err != nil {
			return response.Error(err), "authz: " + err.Error()
		}
	}
	limit := act.MaxBody
	if limit == 0 {
		limit = DefaultMaxBody
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return act.Handler(req), ""
}

// authorize asks authz.Authorize and reports a denial.
func (rt *Router) authorize(id *identity.Identity, r *http.Request, ent authz.Entitlement, e authz.Entity) error {
	err := authz.Authorize(id, ent, e)
	if err != nil && rt.Denied != nil {
		rt.Denied(id, r, ent, e)
	}
	return err
}
