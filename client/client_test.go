package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
)

// fakeDaemon serves handler on a unix socket and returns a client for it.
func fakeDaemon(t *testing.T, handler http.HandlerFunc) *Client {
	t.Helper()
	// t.TempDir can exceed the 108-byte limit of socket paths.
	dir, err := os.MkdirTemp("", "moat-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "unix.socket")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := ConnectUnix(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeEnvelope(w http.ResponseWriter, code int, env api.ResponseRaw) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(env)
}

func okResponse(w http.ResponseWriter, metadata any) {
	writeEnvelope(w, http.StatusOK, api.ResponseRaw{Type: api.SyncResponse, Status: "Success", StatusCode: 200, Metadata: metadata})
}

func TestErrorEnvelopeBecomesStatusError(t *testing.T) {
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, http.StatusPreconditionFailed, api.ResponseRaw{Type: api.ErrorResponse, ErrorCode: 412, Error: "ETag doesn't match: a vs b"})
	})
	err := c.UpdateServer(context.Background(), api.ServerPut{}, "b")
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("err = %#v, want *StatusError", err)
	}
	if se.StatusCode != 412 || err.Error() != "ETag doesn't match: a vs b" {
		t.Fatalf("got %d %q", se.StatusCode, err.Error())
	}
	if StatusCode(err) != 412 || IsNotFound(err) {
		t.Fatalf("StatusCode/IsNotFound disagree with %v", se)
	}
}

func TestNonEnvelopeKeepsHTTPStatus(t *testing.T) {
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream exploded", http.StatusBadGateway)
	})
	_, _, err := c.GetServer(context.Background())
	if StatusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), "upstream exploded") {
		t.Fatalf("err = %v (status %d)", err, StatusCode(err))
	}
}

func TestServerETagRoundTrip(t *testing.T) {
	var gotIfMatch, gotMethod string
	var gotBody api.ServerPut
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("ETag", `"abc123"`)
			okResponse(w, api.Server{Config: map[string]string{"user.a": "1"}, ServerUntrusted: api.ServerUntrusted{Auth: "trusted"}})
			return
		}
		gotMethod, gotIfMatch = r.Method, r.Header.Get("If-Match")
		json.NewDecoder(r.Body).Decode(&gotBody)
		okResponse(w, nil)
	})
	ctx := context.Background()
	srv, etag, err := c.GetServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if etag != "abc123" || srv.Auth != "trusted" || srv.Config["user.a"] != "1" {
		t.Fatalf("etag %q, server %+v", etag, srv)
	}
	if err := c.UpdateServer(ctx, api.ServerPut{Config: map[string]string{"user.b": "2"}}, etag); err != nil {
		t.Fatal(err)
	}
	if gotMethod != http.MethodPut || gotIfMatch != `"abc123"` || gotBody.Config["user.b"] != "2" {
		t.Fatalf("PUT got method %q If-Match %q body %+v", gotMethod, gotIfMatch, gotBody)
	}
	if err := c.PatchServer(ctx, api.ServerPut{Config: map[string]string{"user.b": ""}}); err != nil {
		t.Fatal(err)
	}
	if gotMethod != http.MethodPatch || gotIfMatch != "" {
		t.Fatalf("PATCH got method %q If-Match %q", gotMethod, gotIfMatch)
	}
}

func TestOperationsQueryAndOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var gotQuery string
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.RawQuery
		okResponse(w, map[string][]api.Operation{
			"running": {{ID: "b", Status: "Running", CreatedAt: t0.Add(time.Second)}},
			"success": {{ID: "a", Status: "Success", CreatedAt: t0}},
		})
	})
	ctx := context.Background()
	ops, err := c.UseProject("p1").GetOperations(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if gotQuery != "project=p1&recursion=1" {
		t.Fatalf("query %q", gotQuery)
	}
	if len(ops) != 2 || ops[0].ID != "a" || ops[1].ID != "b" {
		t.Fatalf("ops %+v, want a then b", ops)
	}
	if _, err := c.UseProject("p1").GetOperations(ctx, true); err != nil {
		t.Fatal(err)
	}
	if gotQuery != "all-projects=true&recursion=1" {
		t.Fatalf("all-projects query %q", gotQuery)
	}
}

func TestAsyncOperationWait(t *testing.T) {
	final := api.Operation{ID: "op1", Status: "Failure", StatusCode: api.Failure, Err: "disk on fire"}
	var waitQuery string
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/1.0/things":
			op := api.Operation{ID: "op1", Status: "Running", StatusCode: api.Running}
			w.Header().Set("Location", "/1.0/operations/op1")
			writeEnvelope(w, http.StatusAccepted, api.ResponseRaw{Type: api.AsyncResponse, StatusCode: 100, Operation: "/1.0/operations/op1", Metadata: op})
		case "/1.0/operations/op1/wait":
			waitQuery = r.URL.RawQuery
			if r.URL.Query().Get("timeout") == "0.5" {
				okResponse(w, api.Operation{ID: "op1", Status: "Running", StatusCode: api.Running})
				return
			}
			okResponse(w, final)
		default:
			http.NotFound(w, r)
		}
	})
	ctx := context.Background()
	env, _, err := c.Query(ctx, http.MethodPost, "/1.0/things", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	op, err := c.OperationFromResponse(env)
	if err != nil {
		t.Fatal(err)
	}
	if op.ID != "op1" || op.StatusCode != api.Running {
		t.Fatalf("handle %+v", op.Operation)
	}
	if err := op.Wait(ctx, 500*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("short wait: err = %v, want ErrTimeout", err)
	}
	err = op.Wait(ctx, -1)
	if err == nil || err.Error() != "disk on fire" || waitQuery != "timeout=-1" {
		t.Fatalf("wait err = %v, query %q", err, waitQuery)
	}
	if op.StatusCode != api.Failure {
		t.Fatalf("handle not refreshed: %+v", op.Operation)
	}
	if _, err := c.OperationFromResponse(&api.Response{Type: api.SyncResponse}); err == nil {
		t.Fatal("a sync envelope made an operation handle")
	}
}

func TestEventsDelivered(t *testing.T) {
	var gotQuery string
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.RawQuery
		if r.URL.Query().Get("type") == "bogus" {
			writeEnvelope(w, http.StatusBadRequest, api.ResponseRaw{Type: api.ErrorResponse, ErrorCode: 400, Error: `"bogus" is not a supported event type`})
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		for _, action := range []string{"project-created", "project-deleted"} {
			md, _ := json.Marshal(api.EventLifecycle{Action: action, Source: "/1.0/projects/p"})
			buf, _ := json.Marshal(api.Event{Type: api.EventTypeLifecycle, Metadata: md})
			conn.Write(r.Context(), websocket.MessageText, buf)
		}
		conn.Close(websocket.StatusNormalClosure, "")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := c.GetEvents(ctx, EventOptions{Types: []string{"bogus"}})
	if StatusCode(err) != 400 || err.Error() != `"bogus" is not a supported event type` {
		t.Fatalf("refused upgrade: err = %v", err)
	}

	l, err := c.GetEvents(ctx, EventOptions{Types: []string{"lifecycle", "logging"}, AllProjects: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if gotQuery != "all-projects=true&type=lifecycle%2Clogging" {
		t.Fatalf("query %q", gotQuery)
	}
	var actions []string
	for ev := range l.Events() {
		lc, err := Lifecycle(ev)
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, lc.Action)
	}
	if strings.Join(actions, ",") != "project-created,project-deleted" {
		t.Fatalf("actions %v", actions)
	}
	// The server ended the stream: the listener says so.
	if l.Err() == nil {
		t.Fatal("stream ended by the server but Err is nil")
	}
}

func TestConnectErrorNamesSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "missing.socket")
	c, err := ConnectUnix(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.GetServer(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot connect to moatd at "+sock) {
		t.Fatalf("err = %v", err)
	}
}

func TestQueryRejectsRelativePath(t *testing.T) {
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) { okResponse(w, nil) })
	if _, _, err := c.Query(context.Background(), http.MethodGet, "1.0", nil); err == nil {
		t.Fatal("relative path accepted")
	}
}
