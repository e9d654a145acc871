package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// wsExec starts a websocket exec and returns its operation id and the raw
// "fds" metadata.
func wsExec(t *testing.T, d *testdaemon.Daemon, name string, body map[string]any) (string, map[string]any) {
	t.Helper()
	body["wait-for-websocket"] = true
	res := d.Do("POST", "/1.0/instances/"+name+"/exec", body)
	if res.Status != 202 {
		t.Fatalf("exec: %d %s", res.Status, res.Raw)
	}
	var op struct {
		ID       string         `json:"id"`
		Metadata map[string]any `json:"metadata"`
	}
	res.Metadata(t, &op)
	fds, _ := op.Metadata["fds"].(map[string]any)
	return op.ID, fds
}

// dialOp connects to an operation's websocket; on a refusal it returns
// the HTTP status and the error envelope's text.
func dialOp(ctx context.Context, d *testdaemon.Daemon, id string, secret any) (*websocket.Conn, int, string, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.Socket())
	}}}
	c, resp, err := websocket.Dial(ctx, fmt.Sprintf("ws://moat/1.0/operations/%s/websocket?secret=%v", id, secret),
		&websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		status, msg := 0, ""
		if resp != nil {
			status = resp.StatusCode
			var env api.ResponseRaw
			if resp.Body != nil && json.NewDecoder(resp.Body).Decode(&env) == nil {
				msg = env.Error
			}
		}
		return nil, status, msg, err
	}
	c.SetReadLimit(-1)
	return c, 101, "", nil
}

func mustDial(t *testing.T, ctx context.Context, d *testdaemon.Daemon, id string, secret any) *websocket.Conn {
	t.Helper()
	c, status, msg, err := dialOp(ctx, d, id, secret)
	if err != nil {
		t.Fatalf("websocket: %d %q %v", status, msg, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// drain reads c in the background, as a client does, so the daemon's
// close handshake is answered.
func drain(c *websocket.Conn) *websocket.Conn {
	c.CloseRead(context.Background())
	return c
}

// readAll reads binary frames until the end-of-stream frame.
func readAll(ctx context.Context, c *websocket.Conn) string {
	var b strings.Builder
	for {
		typ, data, err := c.Read(ctx)
		if err != nil || typ == websocket.MessageText {
			return b.String()
		}
		b.Write(data)
	}
}

func sendControl(t *testing.T, ctx context.Context, c *websocket.Conn, msg api.ExecControl) {
	t.Helper()
	buf, _ := json.Marshal(msg)
	if err := c.Write(ctx, websocket.MessageText, buf); err != nil {
		t.Fatal(err)
	}
}

// waitOp waits up to timeout seconds for an operation.
func waitOp(t *testing.T, d *testdaemon.Daemon, id string, timeout int) api.Operation {
	t.Helper()
	var op api.Operation
	d.Do("GET", fmt.Sprintf("/1.0/operations/%s/wait?timeout=%d", id, timeout), nil).Metadata(t, &op)
	return op
}

// TestExecControlBeforeStart: a signal or a window resize sent on the
// control websocket before the command has started (the client connects
// control first) reaches the command.
func TestExecControlBeforeStart(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "c1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// SIGTERM before fds 0-2 are connected: the sleep dies of it at
	// once (128+15) instead of running for 30 s.
	id, fds := wsExec(t, d, "c1", map[string]any{"command": []string{"sleep", "30"}})
	ctl := drain(mustDial(t, ctx, d, id, fds["control"]))
	sendControl(t, ctx, ctl, api.ExecControl{Command: "signal", Signal: 15})
	// The daemon reads the message before the last fd connects.
	time.Sleep(200 * time.Millisecond)
	for _, fd := range []string{"0", "1", "2"} {
		drain(mustDial(t, ctx, d, id, fds[fd]))
	}
	start := time.Now()
	op := waitOp(t, d, id, 15)
	if op.Status != "Success" || op.Metadata["return"] != float64(143) || time.Since(start) > 10*time.Second {
		t.Fatalf("signal sent before the start: %s return %v after %v (%s)", op.Status, op.Metadata["return"], time.Since(start), op.Err)
	}

	// A resize before the start: the terminal starts with that size.
	id, fds = wsExec(t, d, "c1", map[string]any{"command": []string{"stty", "size"}, "interactive": true, "width": 80, "height": 24})
	ctl = drain(mustDial(t, ctx, d, id, fds["control"]))
	sendControl(t, ctx, ctl, api.ExecControl{Command: "window-resize", Args: map[string]string{"width": "100", "height": "40"}})
	time.Sleep(200 * time.Millisecond)
	out := readAll(ctx, mustDial(t, ctx, d, id, fds["0"]))
	if op := waitOp(t, d, id, 15); op.Status != "Success" || strings.TrimSpace(out) != "40 100" {
		t.Fatalf("resize sent before the start: %s %v, terminal %q", op.Status, op.Metadata["return"], out)
	}
}

// TestExecWebsocketConnectRace: of concurrent connections with the same
// secret exactly one is accepted, the others get a 409 naming the fd; a
// connection after the command has ended is refused.
func TestExecWebsocketConnectRace(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "c1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for round := 0; round < 5; round++ {
		id, fds := wsExec(t, d, "c1", map[string]any{"command": []string{"true"}})
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []*websocket.Conn
		var refusals []string
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, status, msg, err := dialOp(ctx, d, id, fds["0"])
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					won = append(won, c)
					return
				}
				refusals = append(refusals, fmt.Sprintf("%d %s", status, msg))
			}()
		}
		wg.Wait()
		for _, c := range won {
			drain(c)
			t.Cleanup(func() { c.CloseNow() })
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d of %d connections for fd 0 accepted (refusals %q)", round, len(won), n, refusals)
		}
		for _, r := range refusals {
			if r != `409 Websocket for fd "0" is already connected` {
				t.Fatalf("round %d: refusal %q", round, r)
			}
		}
		// The accepted one works: the command runs once 1 and 2 join.
		drain(mustDial(t, ctx, d, id, fds["1"]))
		drain(mustDial(t, ctx, d, id, fds["2"]))
		if op := waitOp(t, d, id, 15); op.Status != "Success" || op.Metadata["return"] != float64(0) {
			t.Fatalf("round %d: %s %v %s", round, op.Status, op.Metadata["return"], op.Err)
		}
		// Control was never connected: after the end it is refused
		// rather than accepted and left open.
		if _, status, msg, err := dialOp(ctx, d, id, fds["control"]); err == nil || status != 400 || !strings.Contains(msg, "ended") {
			t.Fatalf("round %d: control after the end: %d %q %v", round, status, msg, err)
		}
	}
}

// TestExecFdsMetadata: the fds of a websocket exec have LXD's shape (see
// exec-op.json for the operation around them): "0", "1", "2" and
// "control" non-interactive, "0" and "control" interactive, each a
// distinct 64-hex secret.
func TestExecFdsMetadata(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "c1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := keysOf(capture(t, "exec-op.json")["metadata"].(map[string]any))
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, tc := range []struct {
		interactive bool
		keys        string
	}{{false, "0 1 2 control"}, {true, "0 control"}} {
		res := d.Do("POST", "/1.0/instances/c1/exec", map[string]any{"command": []string{"true"}, "wait-for-websocket": true, "interactive": tc.interactive})
		var env map[string]any
		if err := json.Unmarshal(res.Raw, &env); err != nil {
			t.Fatal(err)
		}
		op := env["metadata"].(map[string]any)
		got := keysOf(op)
		for k := range want {
			if !got[k] {
				t.Errorf("interactive=%v: operation lacks LXD's key %q", tc.interactive, k)
			}
		}
		if op["class"] != "websocket" || op["description"] != "Executing command" {
			t.Errorf("interactive=%v: class %v, description %v", tc.interactive, op["class"], op["description"])
		}
		fds := op["metadata"].(map[string]any)["fds"].(map[string]any)
		var keys []string
		seen := map[any]bool{}
		for k, v := range fds {
			keys = append(keys, k)
			s, _ := v.(string)
			if !hex64.MatchString(s) || seen[v] {
				t.Errorf("interactive=%v: fd %s secret %v", tc.interactive, k, v)
			}
			seen[v] = true
		}
		sort.Strings(keys)
		if strings.Join(keys, " ") != tc.keys {
			t.Errorf("interactive=%v: fds %v, want %s", tc.interactive, keys, tc.keys)
		}
		// Finish the command.
		id := op["id"].(string)
		for _, fd := range strings.Fields(tc.keys) {
			if fd != "control" {
				drain(mustDial(t, ctx, d, id, fds[fd]))
			}
		}
		if op := waitOp(t, d, id, 15); op.Status != "Success" {
			t.Errorf("interactive=%v: %s %s", tc.interactive, op.Status, op.Err)
		}
	}
}

// recorded runs a command with record-output and returns the operation.
func recorded(t *testing.T, d *testdaemon.Daemon, name string, body map[string]any) api.Operation {
	t.Helper()
	body["record-output"] = true
	return mustSucceed(t, d, d.Do("POST", "/1.0/instances/"+name+"/exec", body))
}

// getLog fetches a URL and returns its status, body and headers.
func getLog(t *testing.T, d *testdaemon.Daemon, url string) (int, string, http.Header) {
	t.Helper()
	res, err := d.HTTPClient().Get("http://moat" + url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return res.StatusCode, b.String(), res.Header
}

// TestExecDefaults: the user, group, cwd and environment a command runs
// with, LXD's defaults and the instance's environment.* keys merged under
// the request's.
func TestExecDefaults(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "c1", map[string]string{"environment.FROM_INSTANCE": "i", "environment.BOTH": "instance"})
	op := recorded(t, d, "c1", map[string]any{"command": []string{"sh", "-c", "env; echo cwd=$(pwd) ids=$(id -u):$(id -g)"},
		"environment": map[string]string{"BOTH": "request", "FROM_REQUEST": "r"}})
	_, out, _ := getLog(t, d, op.Metadata["output"].(map[string]any)["1"].(string))
	for _, line := range []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root", "USER=root",
		"FROM_INSTANCE=i", "BOTH=request", "FROM_REQUEST=r", "cwd=/root ids=0:0",
	} {
		if !strings.Contains("\n"+out, "\n"+line+"\n") {
			t.Errorf("missing %q in:\n%s", line, out)
		}
	}
	// user and group: the ids the command runs as; cwd "/" unless root.
	op = recorded(t, d, "c1", map[string]any{"command": []string{"sh", "-c", "echo cwd=$(pwd) ids=$(id -u):$(id -g)"}, "user": 1000, "group": 1234})
	if _, out, _ := getLog(t, d, op.Metadata["output"].(map[string]any)["1"].(string)); out != "cwd=/ ids=1000:1234\n" {
		t.Errorf("user 1000 group 1234: %q", out)
	}
	op = recorded(t, d, "c1", map[string]any{"command": []string{"id", "-g"}, "group": 77})
	if _, out, _ := getLog(t, d, op.Metadata["output"].(map[string]any)["1"].(string)); out != "77\n" {
		t.Errorf("group 77: id -g = %q", out)
	}
}

// TestExecLogs: record-output files (stdout and stderr) are listed and
// served with LXD's headers, deleted one by one, follow a rename, and are
// never served to a later instance given the same name.
func TestExecLogs(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "c1", nil)
	op := recorded(t, d, "c1", map[string]any{"command": []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
	output := op.Metadata["output"].(map[string]any)
	outURL, errURL := output["1"].(string), output["2"].(string)
	if op.Metadata["return"] != float64(3) || outURL != "/1.0/instances/c1/logs/exec_"+op.ID+".stdout" || errURL != "/1.0/instances/c1/logs/exec_"+op.ID+".stderr" {
		t.Fatalf("operation metadata %v", op.Metadata)
	}
	outFile, errFile := filepath.Base(outURL), filepath.Base(errURL)
	for url, want := range map[string]string{outURL: "out\n", errURL: "err\n"} {
		status, body, hdr := getLog(t, d, url)
		lm, err := http.ParseTime(hdr.Get("Last-Modified"))
		if status != 200 || body != want || hdr.Get("Content-Length") != "4" || err != nil || time.Since(lm) > time.Minute ||
			hdr.Get("Content-Type") != "application/octet-stream" || hdr.Get("Content-Disposition") != "inline;filename="+filepath.Base(url) {
			t.Errorf("GET %s: %d %q %v", url, status, body, hdr)
		}
	}
	var logs []string
	d.Do("GET", "/1.0/instances/c1/logs", nil).Metadata(t, &logs)
	if fmt.Sprint(logs) != fmt.Sprint([]string{errURL, outURL, "/1.0/instances/c1/logs/lxc.log"}) {
		t.Errorf("log list %v", logs)
	}
	// lxc.log (liblxc's log of the start) is served, never deleted;
	// names other than lxc.log and exec_*.std{out,err} are refused.
	if status, _, _ := getLog(t, d, "/1.0/instances/c1/logs/lxc.log"); status != 200 {
		t.Errorf("GET lxc.log: %d", status)
	}
	if r := d.Do("DELETE", "/1.0/instances/c1/logs/lxc.log", nil); r.Status != 400 || !strings.Contains(r.Body.Error, "lxc.log") {
		t.Errorf("DELETE lxc.log: %d %s", r.Status, r.Raw)
	}
	for _, bad := range []string{"exec_x.stdout", "lxc.conf", "..", "exec_" + op.ID + ".stdin"} {
		if r := d.Do("GET", "/1.0/instances/c1/logs/"+bad, nil); r.Status != 400 || !strings.Contains(r.Body.Error, "log file name") {
			t.Errorf("GET log %q: %d %s", bad, r.Status, r.Raw)
		}
		if r := d.Do("DELETE", "/1.0/instances/c1/logs/"+bad, nil); r.Status != 400 {
			t.Errorf("DELETE log %q: %d %s", bad, r.Status, r.Raw)
		}
	}

	// Rename: the output follows the instance.
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/c1/state", map[string]any{"action": "stop", "force": true}))
	mustSucceed(t, d, d.Do("POST", "/1.0/instances/c1", map[string]any{"name": "c2"}))
	if status, body, _ := getLog(t, d, "/1.0/instances/c2/logs/"+errFile); status != 200 || body != "err\n" {
		t.Fatalf("stderr log after the rename: %d %q", status, body)
	}
	// Delete one file: gone from the list, 404 afterwards.
	if r := d.Do("DELETE", "/1.0/instances/c2/logs/"+outFile, nil); r.Status != 200 {
		t.Fatalf("DELETE %s: %d %s", outFile, r.Status, r.Raw)
	}
	if r := d.Do("DELETE", "/1.0/instances/c2/logs/"+outFile, nil); r.Status != 404 {
		t.Errorf("DELETE %s again: %d %s", outFile, r.Status, r.Raw)
	}
	if status, _, _ := getLog(t, d, "/1.0/instances/c2/logs/"+outFile); status != 404 {
		t.Errorf("GET of a deleted log: %d", status)
	}
	d.Do("GET", "/1.0/instances/c2/logs", nil).Metadata(t, &logs)
	if fmt.Sprint(logs) != fmt.Sprint([]string{"/1.0/instances/c2/logs/" + errFile}) {
		t.Errorf("log list after the delete (stopped, so no lxc.log of a start under this name): %v", logs)
	}

	// A new instance under the old name sees none of c1's output.
	launch(t, d, "c1", nil)
	if status, body, _ := getLog(t, d, "/1.0/instances/c1/logs/"+errFile); status != 404 {
		t.Fatalf("a new c1 serves the old c1's output: %d %q", status, body)
	}
	// Deleting the instance deletes its output: a new c2 has none.
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/c2", nil))
	launch(t, d, "c2", nil)
	if status, body, _ := getLog(t, d, "/1.0/instances/c2/logs/"+errFile); status != 404 {
		t.Fatalf("a new c2 serves the deleted c2's output: %d %q", status, body)
	}
	ents, err := os.ReadDir(filepath.Join(d.Dir, "logs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(d.Dir, "logs", e.Name(), errFile)); err == nil {
			t.Errorf("the deleted instance's output is still on disk under %s", e.Name())
		}
	}
}

// TestLXCQueryLogs: the real lxc client prints lxc.log (lxc info
// --show-log), lists an instance's log files and deletes one.
func TestLXCQueryLogs(t *testing.T) {
	lxc := lxcLaunched(t)
	if out := lxc.run("info", "--show-log", "c1"); !strings.Contains(out, "Name: c1") || !strings.Contains(out, "Log:") {
		t.Fatalf("lxc info --show-log:\n%s", out)
	}
	lxc.run("exec", "c1", "--", "true")
	var logs []string
	if err := json.Unmarshal([]byte(lxc.run("query", "/1.0/instances/c1/logs")), &logs); err != nil || fmt.Sprint(logs) != "[/1.0/instances/c1/logs/lxc.log]" {
		t.Fatalf("lxc query of the log list: %v %v", logs, err)
	}
	// What lxc exec does not record, a record-output exec does.
	out := lxc.run("query", "--wait", "-X", "POST", "-d", `{"command":["echo","hi"],"record-output":true}`, "/1.0/instances/c1/exec")
	var op api.Operation
	if err := json.Unmarshal([]byte(out), &op); err != nil || op.Status != "Success" {
		t.Fatalf("lxc query exec: %v %s", err, out)
	}
	stdout := op.Metadata["output"].(map[string]any)["1"].(string)
	lxc.run("query", "-X", "DELETE", stdout)
	if err := json.Unmarshal([]byte(lxc.run("query", "/1.0/instances/c1/logs")), &logs); err != nil ||
		fmt.Sprint(logs) != "[/1.0/instances/c1/logs/exec_"+op.ID+".stderr /1.0/instances/c1/logs/lxc.log]" {
		t.Fatalf("log list after lxc query -X DELETE %s: %v %v", stdout, logs, err)
	}
	if out, err := lxc.cmd("query", "-X", "DELETE", "/1.0/instances/c1/logs/lxc.log").CombinedOutput(); err == nil || !strings.Contains(string(out), "may not be deleted") {
		t.Fatalf("lxc query -X DELETE lxc.log: %v %s", err, out)
	}
}
