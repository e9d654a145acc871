package integration

import (
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

func projectNames(t *testing.T, d *testdaemon.Daemon) []string {
	t.Helper()
	var urls []string
	d.Do("GET", "/1.0/projects", nil).Metadata(t, &urls)
	return urls
}

func TestProjects(t *testing.T) {
	d := testdaemon.Start(t)

	r := d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "p1", ProjectPut: api.ProjectPut{Description: "first", Config: map[string]string{"features.images": "false"}}})
	if r.Status != 201 || r.Header.Get("Location") != "/1.0/projects/p1" {
		t.Fatalf("create: %d %q %s", r.Status, r.Header.Get("Location"), r.Body.Error)
	}
	var p api.Project
	r = d.Do("GET", "/1.0/projects/p1", nil)
	r.Metadata(t, &p)
	if p.Description != "first" || p.Config["features.images"] != "false" || p.Config["features.profiles"] != "true" || p.UsedBy == nil {
		t.Fatalf("project = %+v", p)
	}
	etag := r.Header.Get("ETag")

	// PATCH merges, PUT replaces.
	if r := d.Do("PATCH", "/1.0/projects/p1", map[string]any{"config": map[string]string{"user.a": "b"}}); r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Body.Error)
	}
	d.Do("GET", "/1.0/projects/p1", nil).Metadata(t, &p)
	if p.Description != "first" || p.Config["user.a"] != "b" || p.Config["features.images"] != "false" {
		t.Fatalf("after patch: %+v", p)
	}
	res := testdaemon.DoWith(t, d.HTTPClient(), "PUT", "/1.0/projects/p1", api.ProjectPut{Config: map[string]string{}}, map[string]string{"If-Match": etag})
	if res.Status != 412 {
		t.Fatalf("PUT with stale ETag: %d", res.Status)
	}

	bad := []struct {
		method, path string
		body         any
		status       int
		word         string
	}{
		{"POST", "/1.0/projects", api.ProjectsPost{Name: "a/b"}, 400, "a/b"},
		{"POST", "/1.0/projects", api.ProjectsPost{Name: "-x"}, 400, "-x"},
		{"POST", "/1.0/projects", api.ProjectsPost{Name: strings.Repeat("n", 64)}, 400, "63"},
		{"POST", "/1.0/projects", api.ProjectsPost{Name: ""}, 400, "empty"},
		{"POST", "/1.0/projects", api.ProjectsPost{Name: "p1"}, 409, "already exists"},
		{"POST", "/1.0/projects", api.ProjectsPost{Name: "p2", ProjectPut: api.ProjectPut{Config: map[string]string{"restricted.containers.nesting": "maybe"}}}, 400, "restricted.containers.nesting"},
		{"POST", "/1.0/projects", api.ProjectsPost{Name: "p3", ProjectPut: api.ProjectPut{Config: map[string]string{"features.bogus": "true"}}}, 400, "features.bogus"},
		{"POST", "/1.0/projects", map[string]any{"name": 7}, 400, "name"},
		{"PATCH", "/1.0/projects/p1", map[string]any{"config": map[string]string{"limits.memory": "lots"}}, 400, "limits.memory"},
		{"DELETE", "/1.0/projects/default", nil, 403, "default"},
		{"POST", "/1.0/projects/default", api.ProjectPost{Name: "x"}, 403, "default"},
		{"POST", "/1.0/projects/p1", api.ProjectPost{Name: "default"}, 409, "already exists"},
		{"GET", "/1.0/projects/nope", nil, 404, "not found"},
		{"DELETE", "/1.0/projects/nope", nil, 404, "not found"},
		{"GET", "/1.0/operations?project=a%2Fb", nil, 400, "a/b"},
	}
	for _, b := range bad {
		r := d.Do(b.method, b.path, b.body)
		if r.Status != b.status || !strings.Contains(r.Body.Error, b.word) {
			t.Errorf("%s %s %v: %d %q, want %d mentioning %q", b.method, b.path, b.body, r.Status, r.Body.Error, b.status, b.word)
		}
	}
	if got := projectNames(t, d); len(got) != 2 {
		t.Fatalf("rejected requests changed the project list: %v", got)
	}

	// Read-only fields echoed back (as lxc project edit does) are ignored.
	echo := map[string]any{"name": "other", "used_by": []string{"/1.0/x"}, "description": "edited", "config": p.Config}
	if r := d.Do("PUT", "/1.0/projects/p1", echo); r.Status != 200 {
		t.Fatalf("PUT with read-only fields: %d %s", r.Status, r.Body.Error)
	}
	d.Do("GET", "/1.0/projects/p1", nil).Metadata(t, &p)
	if p.Name != "p1" || p.Description != "edited" {
		t.Fatalf("after PUT with echoed fields: %+v", p)
	}

	if r := d.Do("POST", "/1.0/projects/p1", api.ProjectPost{Name: "p9"}); r.Status != 202 {
		t.Fatalf("rename: %d %s", r.Status, r.Body.Error)
	}
	if r := d.Do("GET", "/1.0/projects/p9", nil); r.Status != 200 {
		t.Fatalf("renamed project missing: %d", r.Status)
	}
	if r := d.Do("DELETE", "/1.0/projects/p9", nil); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body.Error)
	}
	if got := projectNames(t, d); len(got) != 1 || got[0] != "/1.0/projects/default" {
		t.Fatalf("projects after delete = %v", got)
	}
}

func TestServerViewOfMissingProject(t *testing.T) {
	d := testdaemon.Start(t)
	if r := d.Do("GET", "/1.0?project=nope", nil); r.Status != 404 {
		t.Fatalf("GET /1.0?project=nope: %d", r.Status)
	}
	d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "there"})
	var s api.Server
	d.Do("GET", "/1.0?project=there", nil).Metadata(t, &s)
	if s.Environment.Project != "there" {
		t.Fatalf("environment.project = %q", s.Environment.Project)
	}
}
