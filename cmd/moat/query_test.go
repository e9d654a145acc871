package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat/moat/api"
)

// fakeStateDir serves handler on <dir>/unix.socket, for the paths no
// daemon endpoint exercises yet (async operations).
func fakeStateDir(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "moat-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "unix.socket"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return dir
}

func TestQueryWaitsForOperation(t *testing.T) {
	ops := map[string]api.Operation{
		"ok":  {ID: "ok", Status: "Success", StatusCode: api.Success, Metadata: map[string]any{"return": 7}},
		"bad": {ID: "bad", Status: "Failure", StatusCode: api.Failure, Err: "exec failed: no such file"},
	}
	dir := fakeStateDir(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		env := api.ResponseRaw{Type: api.SyncResponse, Status: "Success", StatusCode: 200}
		switch r.URL.Path {
		case "/1.0/run/ok", "/1.0/run/bad":
			id := filepath.Base(r.URL.Path)
			w.WriteHeader(http.StatusAccepted)
			env = api.ResponseRaw{Type: api.AsyncResponse, StatusCode: 100, Operation: "/1.0/operations/" + id,
				Metadata: api.Operation{ID: id, Status: "Running", StatusCode: api.Running}}
		case "/1.0/operations/ok/wait":
			env.Metadata = ops["ok"]
		case "/1.0/operations/bad/wait":
			env.Metadata = ops["bad"]
		default:
			w.WriteHeader(http.StatusNotFound)
			env = api.ResponseRaw{Type: api.ErrorResponse, ErrorCode: 404, Error: "not found"}
		}
		json.NewEncoder(w).Encode(env)
	})
	c := &cli{t: t, env: map[string]string{"MOAT_DIR": dir, "MOAT_CONF": t.TempDir()}}

	// Without --wait the operation itself is printed.
	var op api.Operation
	if err := json.Unmarshal([]byte(c.ok("query", "-X", "POST", "/1.0/run/ok")), &op); err != nil || op.ID != "ok" || op.StatusCode != api.Running {
		t.Fatalf("async without --wait: %+v %v", op, err)
	}
	if out := c.ok("query", "--wait", "-X", "POST", "/1.0/run/ok"); out != "{\n    \"return\": 7\n}\n" {
		t.Fatalf("--wait printed %q", out)
	}
	c.fails("exec failed: no such file", "query", "--wait", "-X", "POST", "/1.0/run/bad")
}
