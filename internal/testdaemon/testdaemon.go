// Package testdaemon starts a real moatd process in a temporary state
// directory for integration tests, and talks to it over its unix socket.
package testdaemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/storage/overlay"
)

// Group is the admin group tests run moatd with.
const Group = "moat"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// RequireRoot fails (under CI=true) or skips a test that needs root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("integration test needs root, and CI=true forbids skipping it")
	}
	t.Skip("integration test needs root")
}

// Binary builds cmd/moatd once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := processTempDir("moatd-bin.pid")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "moatd")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/moatd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build moatd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// EnsureGroup creates the admin group if the machine lacks it.
func EnsureGroup(t testing.TB) {
	t.Helper()
	if _, err := user.LookupGroup(Group); err == nil {
		return
	}
	if out, err := exec.Command("groupadd", "--system", Group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v: %s", Group, err, out)
	}
}

// Daemon is a moatd process under test.
type Daemon struct {
	t      testing.TB
	Dir    string
	Args   []string
	cmd    *exec.Cmd
	waited chan error
	Log    *bytes.Buffer
	mu     sync.Mutex
}

// Start runs moatd with a fresh state directory; it is stopped at the end of
// the test.
func Start(t testing.TB, extraArgs ...string) *Daemon {
	t.Helper()
	RequireRoot(t)
	EnsureGroup(t)
	dir, err := os.MkdirTemp("", "moat-test-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{t: t, Dir: dir, Args: extraArgs}
	t.Cleanup(func() {
		d.Stop()
		// Instance root filesystems stay mounted across moatd restarts:
		// detach what a test left, so the removal stays on this disk.
		if err := overlay.UnmountUnder(dir); err != nil {
			t.Errorf("unmounting under %s: %v", dir, err)
		}
		os.RemoveAll(dir)
	})
	d.Restart()
	return d
}

// Socket is the admin socket path.
func (d *Daemon) Socket() string { return filepath.Join(d.Dir, "unix.socket") }

// Restart starts the daemon again on the same state directory (after Stop
// or Kill).
func (d *Daemon) Restart() {
	d.t.Helper()
	args := append([]string{"--state-dir", d.Dir, "--group", Group, "--log-level", "debug"}, d.Args...)
	cmd := exec.Command(Binary(d.t), args...)
	d.Log = &bytes.Buffer{}
	cmd.Stdout = &lockedWriter{w: d.Log, mu: &d.mu}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd = cmd
	d.waited = make(chan error, 1)
	go func() { d.waited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", d.Socket()); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-d.waited:
			d.t.Fatalf("moatd exited during start: %v\n%s", err, d.Logs())
		case <-time.After(5 * time.Millisecond):
		}
	}
	d.t.Fatalf("moatd did not open its socket in 10s\n%s", d.Logs())
}

// Logs returns what the daemon printed.
func (d *Daemon) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Log.String()
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Stop sends SIGTERM and waits for the daemon to exit.
func (d *Daemon) Stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.waited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.waited
	}
	d.cmd = nil
}

// Kill ends the daemon with SIGKILL, as a crash would.
func (d *Daemon) Kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.waited
	d.cmd = nil
}

// HTTPClient returns a client that talks to the admin socket.
func (d *Daemon) HTTPClient() *http.Client {
	return UnixClient(d.Socket())
}

// UnixClient returns an HTTP client over a unix socket.
func UnixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", path)
		},
	}}
}

// Result is a decoded API response.
type Result struct {
	Status int
	Header http.Header
	Body   api.Response
	Raw    []byte
}

// Do sends a request to the admin socket; body may be nil, a string (sent
// as is) or a value (JSON-encoded).
func (d *Daemon) Do(method, path string, body any) Result {
	d.t.Helper()
	return DoWith(d.t, d.HTTPClient(), method, path, body, nil)
}

// DoWith sends a request with the given client and headers.
func DoWith(t testing.TB, c *http.Client, method, path string, body any, hdr map[string]string) Result {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = "http://moat" + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := Result{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if err := json.Unmarshal(raw, &r.Body); err != nil {
		t.Fatalf("%s %s: response is not an API envelope: %v: %s", method, path, err, raw)
	}
	return r
}

// Metadata decodes the response metadata into v.
func (r Result) Metadata(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body.Metadata, v); err != nil {
		t.Fatalf("decode metadata: %v: %s", err, r.Body.Metadata)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
