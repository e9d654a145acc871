package daemon

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
	"github.com/moat/moat/internal/testdaemon"
)

// A matrix class is an identity together with the project its requests
// name: confined identities are tried inside and outside their projects.
type matrixClass struct {
	name    string
	id      *identity.Identity
	project string
}

var (
	restrictedCert = &identity.Identity{Kind: identity.TLSRestricted, Username: "f00d", Protocol: "tls", Projects: []string{"p1"}}
	socketUser     = &identity.Identity{Kind: identity.UnixUser, Username: "alice", Protocol: "unix", Address: "@",
		UID: 1000, GID: 1000, Projects: []string{"user-1000"}, DefaultProject: "user-1000"}
	matrixClasses = []matrixClass{
		{"untrusted", &identity.Identity{Kind: identity.Untrusted}, "p1"},
		{"unix-admin", &identity.Identity{Kind: identity.UnixAdmin, Username: "root", Protocol: "unix", Address: "@"}, "p1"},
		{"cert-admin", &identity.Identity{Kind: identity.TLSAdmin, Username: "beef", Protocol: "tls"}, "p1"},
		{"restricted-in", restrictedCert, "p1"},
		{"restricted-out", restrictedCert, "p2"},
		{"user-own", socketUser, "user-1000"},
		{"user-other", socketUser, "user-2000"},
	}
)

// authzMatrix: for every route (METHOD path), the outcome per class in
// matrixClasses order: 'a' the request reaches its handler, '3' 403, '4'
// 404. A route missing here fails TestAuthorizationMatrix.
//
// Columns: untrusted, unix-admin, cert-admin, restricted-in,
// restricted-out, user-own, user-other.
var authzMatrix = map[string]string{
	"GET /":    "aaaa4a4",
	"GET /1.0": "aaaa4a4",
	// Server config and server-level objects: admins only.
	"PUT /1.0":                           "3aa3434",
	"PATCH /1.0":                         "3aa3434",
	"GET /1.0/events":                    "3aaa4a4",
	"GET /1.0/projects":                  "3aaa4a4",
	"POST /1.0/projects":                 "3aa3434",
	"GET /1.0/projects/{name}":           "3aaa4a4",
	"PUT /1.0/projects/{name}":           "3aa3434",
	"PATCH /1.0/projects/{name}":         "3aa3434",
	"POST /1.0/projects/{name}":          "3aa3434",
	"GET /1.0/projects/{name}/state":     "3aaa4a4",
	"DELETE /1.0/projects/{name}":        "3aa3434",
	"GET /1.0/storage-pools":             "3aaa4a4",
	"POST /1.0/storage-pools":            "3aa3434",
	"GET /1.0/storage-pools/{name}":      "3aaa4a4",
	"GET /1.0/operations":                "3aaa4a4",
	"GET /1.0/operations/{id}":           "3aaa4a4",
	"DELETE /1.0/operations/{id}":        "3aaa4a4",
	"GET /1.0/operations/{id}/wait":      "3aaa4a4",
	"GET /1.0/operations/{id}/websocket": "3aaa4a4",
	// The trust store: untrusted callers may only redeem; confined
	// identities may not add certificates, and others' do not exist.
	"GET /1.0/certificates":                  "3aaa4a4",
	"POST /1.0/certificates":                 "aaa3434",
	"GET /1.0/certificates/{fingerprint}":    "3aa4444",
	"PUT /1.0/certificates/{fingerprint}":    "3aa4444",
	"PATCH /1.0/certificates/{fingerprint}":  "3aa4444",
	"DELETE /1.0/certificates/{fingerprint}": "3aa4444",
	// Project-scoped objects: everything inside one's own projects.
	"GET /1.0/images":                       "aaaa4a4",
	"POST /1.0/images":                      "3aaa4a4",
	"GET /1.0/images/aliases":               "3aaa4a4",
	"POST /1.0/images/aliases":              "3aaa4a4",
	"GET /1.0/images/aliases/{name}":        "aaaa4a4",
	"PUT /1.0/images/aliases/{name}":        "3aaa4a4",
	"PATCH /1.0/images/aliases/{name}":      "3aaa4a4",
	"POST /1.0/images/aliases/{name}":       "3aaa4a4",
	"DELETE /1.0/images/aliases/{name}":     "3aaa4a4",
	"GET /1.0/images/{fingerprint}":         "aaaa4a4",
	"PUT /1.0/images/{fingerprint}":         "3aaa4a4",
	"PATCH /1.0/images/{fingerprint}":       "3aaa4a4",
	"DELETE /1.0/images/{fingerprint}":      "3aaa4a4",
	"GET /1.0/instances":                    "3aaa4a4",
	"POST /1.0/instances":                   "3aaa4a4",
	"GET /1.0/instances/{name}":             "3aaa4a4",
	"PUT /1.0/instances/{name}":             "3aaa4a4",
	"PATCH /1.0/instances/{name}":           "3aaa4a4",
	"POST /1.0/instances/{name}":            "3aaa4a4",
	"DELETE /1.0/instances/{name}":          "3aaa4a4",
	"GET /1.0/instances/{name}/state":       "3aaa4a4",
	"PUT /1.0/instances/{name}/state":       "3aaa4a4",
	"POST /1.0/instances/{name}/exec":       "3aaa4a4",
	"GET /1.0/instances/{name}/files":       "3aaa4a4",
	"POST /1.0/instances/{name}/files":      "3aaa4a4",
	"DELETE /1.0/instances/{name}/files":    "3aaa4a4",
	"GET /1.0/instances/{name}/logs/{file}": "3aaa4a4",
	"GET /1.0/profiles":                     "3aaa4a4",
	"POST /1.0/profiles":                    "3aaa4a4",
	"GET /1.0/profiles/{name}":              "3aaa4a4",
	"PUT /1.0/profiles/{name}":              "3aaa4a4",
	"PATCH /1.0/profiles/{name}":            "3aaa4a4",
	"POST /1.0/profiles/{name}":             "3aaa4a4",
	"DELETE /1.0/profiles/{name}":           "3aaa4a4",

	// Snapshots and backups: an empty list (none can be taken yet) with
	// can_view; a POST is 501 once authorized like an edit.
	"GET /1.0/instances/{name}/snapshots":  "3aaa4a4",
	"POST /1.0/instances/{name}/snapshots": "3aaa4a4",
	"GET /1.0/instances/{name}/backups":    "3aaa4a4",
	"POST /1.0/instances/{name}/backups":   "3aaa4a4",

	// Log files: listed and read with can_view, deleted with can_exec.
	"GET /1.0/instances/{name}/logs":           "3aaa4a4",
	"DELETE /1.0/instances/{name}/logs/{file}": "3aaa4a4",
}

// TestAuthorizationMatrix sends every route in the route table as every
// identity class through the real pipeline, with each handler replaced by
// a stub, so what decides is exactly authentication, the untrusted gate,
// the project gate and authz.Authorize.
func TestAuthorizationMatrix(t *testing.T) {
	d := startInProcess(t)
	ops := map[string]string{}
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		for _, p := range []string{"p1", "p2", "user-1000", "user-2000"} {
			if err := tx.CreateProject(store.Project{Name: p, Config: map[string]string{}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p1", "p2", "user-1000", "user-2000"} {
		op, _ := d.ops.Create(operation.Args{Class: api.OperationClassTask, Project: p, MayCancel: true,
			Run: func(ctx context.Context, _ *operation.Operation) error { <-ctx.Done(); return nil }})
		op.Start()
		ops[p] = op.ID()
	}

	reached := func(*route.Request) response.Response { return response.Sync("reached", nil) }
	var current *identity.Identity
	seen := map[string]bool{}
	for _, e := range d.Router().Endpoints() {
		for _, a := range e.Actions() {
			a.Handler = reached
		}
	}
	d.router.Authenticate = func(*http.Request) *identity.Identity { return current }
	hc := testdaemon.UnixClient(d.SocketPath())

	for _, e := range d.Router().Endpoints() {
		methods := make([]string, 0)
		for m := range e.Actions() {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		for _, m := range methods {
			key := m + " " + e.Path
			seen[key] = true
			want, ok := authzMatrix[key]
			if !ok {
				t.Errorf("route %s has no authorization matrix entry", key)
				continue
			}
			if len(want) != len(matrixClasses) {
				t.Errorf("matrix entry for %s has %d columns, want %d", key, len(want), len(matrixClasses))
				continue
			}
			for i, c := range matrixClasses {
				path := strings.NewReplacer("{name}", c.project, "{id}", ops[c.project],
					"{fingerprint}", "0123abcd", "{file}", "exec-output").Replace(e.Path)
				if !strings.HasPrefix(e.Path, "/1.0/projects/") {
					path = strings.Replace(path, "/1.0/instances/"+c.project, "/1.0/instances/c1", 1)
				}
				current = c.id
				res := testdaemon.DoWith(t, hc, m, path+"?project="+url.QueryEscape(c.project), "{}", nil)
				got := byte('a')
				switch {
				case res.Status == 403:
					got = '3'
				case res.Status == 404:
					got = '4'
				case string(res.Body.Metadata) != `"reached"`:
					got = '?'
				}
				if got != want[i] {
					t.Errorf("%s as %s: got %c (%d %q), want %c", key, c.name, got, res.Status, res.Body.Error, want[i])
				}
			}
		}
	}
	for key := range authzMatrix {
		if !seen[key] {
			t.Errorf("matrix entry %s matches no route", key)
		}
	}
}

// TestListFiltering checks that lists and the event stream, not just single
// objects, show a confined identity only its own projects.
func TestListFiltering(t *testing.T) {
	d := startInProcess(t)
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		for _, p := range []string{"p1", "p2"} {
			if err := tx.CreateProject(store.Project{Name: p, Config: map[string]string{}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p1", "p2", "default"} {
		op, _ := d.ops.Create(operation.Args{Class: api.OperationClassTask, Project: p, Description: "op in " + p,
			Run: func(ctx context.Context, _ *operation.Operation) error { <-ctx.Done(); return nil }})
		op.Start()
	}
	admin := &identity.Identity{Kind: identity.UnixAdmin, Username: "root", Protocol: "unix"}
	current := restrictedCert
	d.router.Authenticate = func(*http.Request) *identity.Identity { return current }
	hc := testdaemon.UnixClient(d.SocketPath())

	var projects []string
	testdaemon.DoWith(t, hc, "GET", "/1.0/projects", nil, nil).Metadata(t, &projects)
	if len(projects) != 1 || projects[0] != "/1.0/projects/p1" {
		t.Fatalf("confined project list = %v", projects)
	}
	var ops map[string][]api.Operation
	testdaemon.DoWith(t, hc, "GET", "/1.0/operations?recursion=1&all-projects=true", nil, nil).Metadata(t, &ops)
	if len(ops["running"]) != 1 || ops["running"][0].Description != "op in p1" {
		t.Fatalf("confined all-projects operations = %+v", ops)
	}
	current = admin
	testdaemon.DoWith(t, hc, "GET", "/1.0/operations?recursion=1&all-projects=true", nil, nil).Metadata(t, &ops)
	if len(ops["running"]) != 3 {
		t.Fatalf("admin sees %d operations, want 3", len(ops["running"]))
	}

	// ?filter= runs on what the caller may see: no filter, however it is
	// phrased, brings back an instance or image of another project.
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		for _, p := range []string{"p1", "p2"} {
			if err := tx.CreateInstance(store.Instance{Project: p, Name: "in-" + p, Type: "container",
				Config: map[string]string{"user.secret": "s-" + p}}); err != nil {
				return err
			}
			pr, err := tx.Project(p)
			if err != nil {
				return err
			}
			pr.Config["features.images"] = "true"
			if err := tx.UpdateProject(pr); err != nil {
				return err
			}
			if err := tx.CreateImage(store.Image{Project: p, Fingerprint: strings.Repeat(p[1:], 64), Type: "container",
				Properties: map[string]string{"os": "os-" + p}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	listed := func(path string) []string {
		t.Helper()
		var urls []string
		res := testdaemon.DoWith(t, hc, "GET", path, nil, nil)
		if res.Status != 200 {
			t.Fatalf("%s: %d %s", path, res.Status, res.Body.Error)
		}
		res.Metadata(t, &urls)
		sort.Strings(urls)
		return urls
	}
	q := url.QueryEscape
	current = restrictedCert
	for _, f := range []string{"name eq in-p2", "project eq p2", "not name eq in-p1", "config.user.secret eq s-p2",
		"name eq in-p1 and project eq p2", "name eq in-p1 and not project eq p1 or project eq p2"} {
		if got := listed("/1.0/instances?all-projects=true&filter=" + q(f)); len(got) != 0 {
			t.Errorf("confined instance list with filter %q = %v", f, got)
		}
		if got := listed("/1.0/instances?project=p1&recursion=1&filter=" + q(f)); len(got) != 0 {
			t.Errorf("confined instance list of p1 with filter %q = %v", f, got)
		}
	}
	if got := listed("/1.0/instances?all-projects=true&filter=" + q("name eq in-p1 or name eq in-p2")); len(got) != 1 || got[0] != "/1.0/instances/in-p1?project=p1" {
		t.Errorf("confined instance list, both named = %v", got)
	}
	for _, f := range []string{"properties.os eq os-p2", "not properties.os eq os-p1", "public eq false and not properties.os eq os-p1"} {
		if got := listed("/1.0/images?all-projects=true&filter=" + q(f)); len(got) != 0 {
			t.Errorf("confined image list with filter %q = %v", f, got)
		}
	}
	if got := listed("/1.0/images?project=p1&filter=" + q("properties.os eq os-p1 or properties.os eq os-p2")); len(got) != 1 {
		t.Errorf("confined image list, both named = %v", got)
	}
	// Untrusted callers see public images only, filter or not.
	current = &identity.Identity{Kind: identity.Untrusted}
	if got := listed("/1.0/images?project=p1&filter=" + q("public eq false")); len(got) != 0 {
		t.Errorf("untrusted image list with filter public eq false = %v", got)
	}
	current = admin
	if got := listed("/1.0/instances?all-projects=true&filter=" + q("name eq in-p1 or name eq in-p2")); len(got) != 2 {
		t.Errorf("admin instance list, both named = %v", got)
	}
	if got := listed("/1.0/images?all-projects=true&filter=" + q("properties.os eq os-p1 or properties.os eq os-p2")); len(got) != 2 {
		t.Errorf("admin image list, both named = %v", got)
	}

	// Events: a confined all-projects listener gets only its project's.
	current = restrictedCert
	c := dialEventsInProcess(t, d, "?type=lifecycle&all-projects=true")
	d.bus.Lifecycle("instance-created", "/1.0/instances/x?project=p2", "p2", nil, nil)
	d.bus.Lifecycle("instance-created", "/1.0/instances/y?project=p1", "p1", nil, nil)
	ev := readEvent(t, c)
	if ev.Project != "p1" {
		t.Fatalf("confined listener got an event of project %q first", ev.Project)
	}
}
