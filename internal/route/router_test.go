package route

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/response"
)

func testRouter(id *identity.Identity, records *[]Record) *Router {
	echo := func(r *Request) response.Response {
		return response.Sync(map[string]string{"name": r.Var("name"), "project": r.Project}, nil)
	}
	rt := NewRouter([]*Endpoint{
		{Path: "/1.0", Get: &Action{Handler: echo, AllowUntrusted: true}},
		{Path: "/1.0/things/{name}",
			Get:  &Action{Handler: echo, Entitlement: authz.CanView, Entity: func(r *Request) authz.Entity { return authz.Entity{Type: "thing", Project: r.Project} }},
			Post: &Action{Handler: func(*Request) response.Response { panic("boom") }, Entitlement: authz.CanEdit},
			Put: &Action{Handler: func(r *Request) response.Response {
				var v map[string]any
				if err := r.DecodeJSON(&v); err != nil {
					return response.Error(err)
				}
				return response.EmptySync()
			}, Entitlement: authz.CanEdit, MaxBody: 16},
		},
	})
	rt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	rt.Authenticate = func(*http.Request) *identity.Identity { return id }
	rt.Audit = func(r Record) { *records = append(*records, r) }
	return rt
}

func call(t *testing.T, rt *Router, method, path, body string, hdr ...string) (int, api.Response) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	var env api.Response
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
		t.Fatalf("%s %s: not an envelope: %s", method, path, w.Body.Bytes())
	}
	return w.Code, env
}

func TestRouterPipeline(t *testing.T) {
	admin := &identity.Identity{Kind: identity.UnixAdmin, Username: "root", Protocol: "unix"}
	var recs []Record
	rt := testRouter(admin, &recs)

	cases := []struct {
		method, path, body string
		status             int
		errText            string
	}{
		{"GET", "/1.0/things/a?project=p1", "", 200, ""},
		{"GET", "/1.0/things/a/", "", 200, ""},
		{"GET", "/1.0/nothing", "", 404, "not found"},
		{"DELETE", "/1.0/things/a", "", 501, "not implemented"},
		{"FROB", "/1.0/things/a", "", 404, `Method "FROB" not found`},
		{"POST", "/1.0/things/a", "", 500, "boom"},
		{"PUT", "/1.0/things/a", `{"a":"0123456789abcdef"}`, 413, "larger than 16 bytes"},
		{"PUT", "/1.0/things/a", `{"a":`, 400, ""},
		{"GET", "/1.0/things/a?project=../x", "", 400, "../x"},
		{"GET", "/1.0/things/a?all-projects=true", "", 400, "All projects queries are not supported"},
	}
	for _, c := range cases {
		code, env := call(t, rt, c.method, c.path, c.body)
		if code != c.status || env.ErrorCode != map[bool]int{true: 0, false: c.status}[c.status < 300] {
			t.Errorf("%s %s: %d (%d %q), want %d", c.method, c.path, code, env.ErrorCode, env.Error, c.status)
		}
		if c.errText != "" && !strings.Contains(env.Error, c.errText) {
			t.Errorf("%s %s: error %q lacks %q", c.method, c.path, env.Error, c.errText)
		}
	}
	// The panic was contained and audited; the router still serves.
	if code, _ := call(t, rt, "GET", "/1.0/things/b", ""); code != 200 {
		t.Fatalf("router dead after a panic: %d", code)
	}
	if len(recs) != len(cases)+1 {
		t.Fatalf("%d audit records for %d requests", len(recs), len(cases)+1)
	}
	if recs[5].Status != 500 || recs[5].Denial != "panic" {
		t.Fatalf("panic record = %+v", recs[5])
	}
}

func TestRouterUntrustedGate(t *testing.T) {
	var recs []Record
	rt := testRouter(&identity.Identity{Kind: identity.Untrusted}, &recs)
	if code, _ := call(t, rt, "GET", "/1.0", ""); code != 200 {
		t.Fatalf("untrusted GET /1.0: %d", code)
	}
	if code, env := call(t, rt, "GET", "/1.0", "", "X-LXD-authenticated", "true"); code != 403 {
		t.Fatalf("untrusted caller expecting auth: %d %q", code, env.Error)
	}
	if code, _ := call(t, rt, "GET", "/1.0/things/a", ""); code != 403 {
		t.Fatalf("untrusted on a trusted endpoint: %d", code)
	}
	if recs[2].Denial != "untrusted" {
		t.Fatalf("denial not audited: %+v", recs[2])
	}
}

func TestRouterAuthorizes(t *testing.T) {
	var recs []Record
	confined := &identity.Identity{Kind: identity.TLSRestricted, Username: "abc", Protocol: "tls", Projects: []string{"p1"}}
	rt := testRouter(confined, &recs)
	var denied []authz.Entity
	rt.Denied = func(_ *identity.Identity, _ *http.Request, _ authz.Entitlement, e authz.Entity) {
		denied = append(denied, e)
	}
	if code, _ := call(t, rt, "GET", "/1.0/things/a?project=p1", ""); code != 200 {
		t.Fatalf("confined identity in its project: %d", code)
	}
	if code, _ := call(t, rt, "GET", "/1.0/things/a?project=p2", ""); code != 404 {
		t.Fatalf("confined identity outside its project: %d", code)
	}
	if len(denied) != 1 || denied[0].Project != "p2" {
		t.Fatalf("denials reported: %+v", denied)
	}
}

func TestRouterProjectGate(t *testing.T) {
	var recs []Record
	confined := &identity.Identity{Kind: identity.TLSRestricted, Username: "abc", Protocol: "tls", Projects: []string{"p1"}}
	rt := testRouter(confined, &recs)
	// /1.0 is open to everyone, but naming a foreign project still hides it.
	if code, _ := call(t, rt, "GET", "/1.0?project=p2", ""); code != 404 {
		t.Fatalf("GET /1.0?project=p2 by a caller confined to p1: %d", code)
	}
	if code, _ := call(t, rt, "GET", "/1.0?project=p1", ""); code != 200 {
		t.Fatalf("own project: %d", code)
	}
	if code, _ := call(t, rt, "GET", "/1.0", ""); code != 200 {
		t.Fatalf("no project named: %d", code)
	}
}
