package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/testdaemon"
)

// startInProcess runs a daemon in this test process, so tests can create
// operations directly and pick the caller's identity.
func startInProcess(t *testing.T) *Daemon {
	t.Helper()
	testdaemon.RequireRoot(t)
	testdaemon.EnsureGroup(t)
	dir := t.TempDir()
	d, err := New(context.Background(), Config{StateDir: dir, Group: testdaemon.Group,
		LogHandler: slog.NewTextHandler(io.Discard, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Shutdown(context.Background()) })
	return d
}

// TestRouteTableDeclaresAuthorization walks every action: each must name
// the entitlement the router checks, or be explicitly open to untrusted
// callers. A new route without either fails here.
func TestRouteTableDeclaresAuthorization(t *testing.T) {
	d := startInProcess(t)
	n := 0
	for _, e := range d.Router().Endpoints() {
		for method, a := range e.Actions() {
			n++
			if a.Handler == nil {
				t.Errorf("%s %s has no handler", method, e.Path)
			}
			if a.Entitlement == "" && !a.AllowUntrusted {
				t.Errorf("%s %s declares no entitlement and is not AllowUntrusted", method, e.Path)
			}
			if a.AllowUntrusted && method != http.MethodGet && !untrustedWrites[method+" "+e.Path] {
				t.Errorf("%s %s accepts untrusted writes without being listed", method, e.Path)
			}
		}
	}
	if n < 15 {
		t.Fatalf("only %d actions in the route table", n)
	}
}

// untrustedWrites are the only mutating actions untrusted callers reach
// (spec 2.1): redeeming a trust token, and image pushes with a secret.
var untrustedWrites = map[string]bool{
	"POST /1.0/certificates": true,
	"POST /1.0/images":       true,
}

func TestOperationsAPI(t *testing.T) {
	d := startInProcess(t)
	owner := &identity.Identity{Kind: identity.TLSRestricted, Username: "owner", Protocol: "tls", Projects: []string{"default"}}
	peer := &identity.Identity{Kind: identity.TLSRestricted, Username: "peer", Protocol: "tls", Projects: []string{"default"}}
	admin := &identity.Identity{Kind: identity.UnixAdmin, Username: "root", Protocol: "unix", Address: "@"}
	// The caller is chosen per request by a header: this test is about
	// the operations API, not authentication.
	d.router.Authenticate = func(r *http.Request) *identity.Identity {
		switch r.Header.Get("X-Test-As") {
		case "owner":
			return owner
		case "peer":
			return peer
		}
		return admin
	}

	echoed := make(chan string, 1)
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassWebsocket, Description: "Testing", Project: "default", Creator: owner,
		Metadata: map[string]any{"fds": map[string]string{"0": "sekrit"}}, SecretKeys: []string{"fds"},
		WebsocketSecrets: []string{"sekrit"}, MayCancel: true,
		Run: func(ctx context.Context, _ *operation.Operation) error { <-ctx.Done(); return ctx.Err() },
		Connect: func(_ *operation.Operation, _ string, w http.ResponseWriter, r *http.Request) error {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return err
			}
			defer c.CloseNow()
			_, msg, err := c.Read(r.Context())
			if err == nil {
				echoed <- string(msg)
			}
			return c.Close(websocket.StatusNormalClosure, "")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	op.Start()

	hc := testdaemon.UnixClient(d.SocketPath())
	get := func(as, path string) testdaemon.Result {
		return testdaemon.DoWith(t, hc, "GET", path, nil, map[string]string{"X-Test-As": as})
	}

	var list map[string][]api.Operation
	get("owner", "/1.0/operations?recursion=1").Metadata(t, &list)
	if len(list["running"]) != 1 || list["running"][0].Metadata["fds"] == nil {
		t.Fatalf("creator's view = %+v", list)
	}
	get("peer", "/1.0/operations?recursion=1").Metadata(t, &list)
	if len(list["running"]) != 1 || list["running"][0].Metadata["fds"] != nil {
		t.Fatalf("another identity sees the websocket secret: %+v", list)
	}
	var urls map[string][]string
	get("admin", "/1.0/operations").Metadata(t, &urls)
	if len(urls["running"]) != 1 || urls["running"][0] != op.URL() {
		t.Fatalf("admin URL list = %v", urls)
	}

	if r := get("admin", op.URL()+"/websocket"); r.Status != 400 || r.Body.Error != "Missing websocket secret" {
		t.Fatalf("no secret: %d %q", r.Status, r.Body.Error)
	}
	if r := get("admin", op.URL()+"/websocket?secret=wrong"); r.Status != 403 {
		t.Fatalf("wrong secret: %d", r.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://moat"+op.URL()+"/websocket?secret=sekrit", &websocket.DialOptions{HTTPClient: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.SocketPath())
		}},
	}})
	if err != nil {
		t.Fatalf("websocket with the right secret: %v", err)
	}
	_ = c.Write(ctx, websocket.MessageBinary, []byte("hello"))
	if got := <-echoed; got != "hello" {
		t.Fatalf("operation received %q", got)
	}
	c.CloseNow()

	start := time.Now()
	r := get("admin", op.URL()+"/wait?timeout=0.05")
	var v api.Operation
	r.Metadata(t, &v)
	if v.StatusCode != api.Running || time.Since(start) > 5*time.Second {
		t.Fatalf("wait with timeout returned %v", v.Status)
	}
	if r := get("admin", op.URL()+"/wait?timeout=soon"); r.Status != 400 {
		t.Fatalf("bad timeout: %d", r.Status)
	}

	if r := testdaemon.DoWith(t, hc, "DELETE", op.URL(), nil, nil); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body.Error)
	}
	r = get("admin", op.URL()+"/wait?timeout=5")
	r.Metadata(t, &v)
	if v.StatusCode != api.Cancelled {
		t.Fatalf("after cancel: %v", v.Status)
	}
	if r := get("admin", "/1.0/operations/00000000-0000-0000-0000-000000000000"); r.Status != 404 {
		t.Fatalf("unknown operation: %d", r.Status)
	}
}

// TestTokenOperationsAdminOnly: a token operation's secret mints an
// unrestricted certificate, so confined identities must not even see it.
func TestTokenOperationsAdminOnly(t *testing.T) {
	d := startInProcess(t)
	confined := &identity.Identity{Kind: identity.TLSRestricted, Username: "c", Protocol: "tls", Projects: []string{"default"}}
	d.router.Authenticate = func(r *http.Request) *identity.Identity {
		if r.Header.Get("X-Test-As") == "confined" {
			return confined
		}
		return &identity.Identity{Kind: identity.UnixAdmin, Username: "root", Protocol: "unix"}
	}
	op, _ := d.ops.Create(operation.Args{Class: api.OperationClassToken, Project: "default", MayCancel: true,
		Metadata: map[string]any{"secret": "abc"}, SecretKeys: []string{"secret"}})
	op.Start()
	hc := testdaemon.UnixClient(d.SocketPath())
	as := map[string]string{"X-Test-As": "confined"}
	r := testdaemon.DoWith(t, hc, "GET", "/1.0/operations?recursion=1", nil, as)
	if strings.Contains(string(r.Raw), op.ID()) {
		t.Fatalf("confined identity lists the token operation: %s", r.Raw)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if r := testdaemon.DoWith(t, hc, m, op.URL(), nil, as); r.Status != 404 {
			t.Fatalf("confined %s on the token operation: %d", m, r.Status)
		}
	}
	r = testdaemon.DoWith(t, hc, "GET", "/1.0/operations?recursion=1", nil, nil)
	var list map[string][]api.Operation
	r.Metadata(t, &list)
	if len(list["running"]) != 1 || list["running"][0].Metadata["secret"] != "abc" {
		t.Fatalf("admin view of the token: %s", r.Raw)
	}
}
