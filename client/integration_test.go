package client_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
	"github.com/moat/moat/internal/testdaemon"
)

func connect(t *testing.T) (*client.Client, context.Context) {
	t.Helper()
	d := testdaemon.Start(t)
	c, err := client.ConnectUnix(d.Socket(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c, ctx
}

func TestIntegrationServerConfig(t *testing.T) {
	c, ctx := connect(t)
	srv, etag, err := c.GetServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Auth != "trusted" || srv.AuthUserMethod != "unix" || etag == "" {
		t.Fatalf("auth %q method %q etag %q", srv.Auth, srv.AuthUserMethod, etag)
	}
	cfg := map[string]string{"user.owner": "ops"}
	if err := c.UpdateServer(ctx, api.ServerPut{Config: cfg}, etag); err != nil {
		t.Fatal(err)
	}
	// The config changed, so the old ETag must be refused.
	err = c.UpdateServer(ctx, api.ServerPut{Config: map[string]string{}}, etag)
	if client.StatusCode(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale ETag: err = %v, want 412", err)
	}
	if err := c.PatchServer(ctx, api.ServerPut{Config: map[string]string{"user.owner": "", "user.x": "1"}}); err != nil {
		t.Fatal(err)
	}
	srv, _, err = c.GetServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Config["user.owner"]; ok || srv.Config["user.x"] != "1" {
		t.Fatalf("after patch: %v", srv.Config)
	}
	err = c.PatchServer(ctx, api.ServerPut{Config: map[string]string{"no.such.key": "1"}})
	if client.StatusCode(err) != http.StatusBadRequest || err.Error() != `Unknown server configuration key "no.such.key"` {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestIntegrationProjects(t *testing.T) {
	c, ctx := connect(t)
	l, err := c.GetEvents(ctx, client.EventOptions{Types: []string{api.EventTypeLifecycle}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	err = c.CreateProject(ctx, api.ProjectsPost{Name: "p1", ProjectPut: api.ProjectPut{Description: "one", Config: map[string]string{"user.a": "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	waitLifecycle(t, l, "project-created", "/1.0/projects/p1")

	p, etag, err := c.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Description != "one" || p.Config["user.a"] != "1" || etag == "" {
		t.Fatalf("project %+v etag %q", p, etag)
	}
	put := p.ProjectPut
	put.Config["user.b"] = "2"
	if err := c.UpdateProject(ctx, "p1", put, etag); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateProject(ctx, "p1", put, etag); client.StatusCode(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale ETag on project: %v", err)
	}
	desc := "uno"
	if err := c.PatchProject(ctx, "p1", api.ProjectPatch{Description: &desc}); err != nil {
		t.Fatal(err)
	}
	if err := c.RenameProject(ctx, "p1", "p2"); err != nil {
		t.Fatal(err)
	}
	list, err := c.GetProjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]api.Project{}
	for _, p := range list {
		got[p.Name] = p
	}
	if _, ok := got["p1"]; ok || got["p2"].Description != "uno" || got["p2"].Config["user.b"] != "2" || got["default"].Name == "" {
		t.Fatalf("projects %+v", list)
	}
	if err := c.DeleteProject(ctx, "p2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.GetProject(ctx, "p2"); !client.IsNotFound(err) {
		t.Fatalf("deleted project: %v", err)
	}
	waitLifecycle(t, l, "project-deleted", "/1.0/projects/p2")
}

// waitLifecycle reads events until the wanted lifecycle action, with a
// bound so a missing event fails instead of hanging.
func waitLifecycle(t *testing.T, l *client.EventListener, action, source string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-l.Events():
			if !ok {
				t.Fatalf("event stream ended waiting for %s: %v", action, l.Err())
			}
			lc, err := client.Lifecycle(ev)
			if err != nil {
				t.Fatal(err)
			}
			if lc.Action == action && lc.Source == source {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s within 10s", action, source)
		}
	}
}

func TestIntegrationOperations(t *testing.T) {
	c, ctx := connect(t)
	ops, err := c.GetOperations(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 0 {
		t.Fatalf("fresh daemon has operations: %+v", ops)
	}
	if _, err := c.UseProject("default").GetOperations(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UseProject("nope").GetOperations(ctx, false); !client.IsNotFound(err) {
		t.Fatalf("operations of a missing project: %v", err)
	}
	const id = "00000000-0000-0000-0000-000000000000"
	if _, err := c.GetOperation(ctx, id); !client.IsNotFound(err) {
		t.Fatalf("unknown operation: %v", err)
	}
	if _, err := c.WaitOperation(ctx, id, time.Second); !client.IsNotFound(err) {
		t.Fatalf("wait on unknown operation: %v", err)
	}
	if err := c.DeleteOperation(ctx, id); !client.IsNotFound(err) {
		t.Fatalf("delete unknown operation: %v", err)
	}
}

func TestIntegrationQueryAndEventErrors(t *testing.T) {
	c, ctx := connect(t)
	env, _, err := c.Query(ctx, http.MethodGet, "/", nil)
	if err != nil || env.Type != api.SyncResponse || string(env.Metadata) != `["/1.0"]` {
		t.Fatalf("GET /: %+v %v", env, err)
	}
	if _, _, err := c.Query(ctx, http.MethodGet, "/1.0/nope", nil); !client.IsNotFound(err) {
		t.Fatalf("unknown path: %v", err)
	}
	_, err = c.GetEvents(ctx, client.EventOptions{Types: []string{"bogus"}})
	if client.StatusCode(err) != http.StatusBadRequest || err.Error() != `"bogus" is not a supported event type` {
		t.Fatalf("bogus event type: %v", err)
	}
}
