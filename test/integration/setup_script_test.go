package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/storage/overlay"
	"github.com/moat/moat/internal/testdaemon"
)

// TestSetupScriptRerunnable runs scripts/setup.sh against a state
// directory of its own (never /var/lib/moat) with freshly built binaries:
// the first run starts moatd, imports the image and launches "first"; a
// second run changes nothing; with the alias deleted and "first" stopped
// a third run re-adds the alias to the image already there and starts
// "first"; a launch that fails exits non-zero saying so. No image
// tarball is left in the state directory. The moatd it started is
// stopped by its PID.
func TestSetupScriptRerunnable(t *testing.T) {
	testdaemon.RequireRoot(t)
	testdaemon.EnsureGroup(t)
	testdaemon.BusyboxImage(t) // the script builds the image from busybox-static
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := t.TempDir()
	if err := os.Symlink(testdaemon.Binary(t), filepath.Join(bin, "moatd")); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "moat"), "./cmd/moat")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build moat: %v\n%s", err, out)
	}
	state, err := os.MkdirTemp("", "moat-setup-")
	if err != nil {
		t.Fatal(err)
	}
	c := testdaemon.UnixClient(filepath.Join(state, "unix.socket"))
	do := func(method, path string, body any) testdaemon.Result {
		return testdaemon.DoWith(t, c, method, path, body, nil)
	}
	waitOp := func(res testdaemon.Result) api.Operation {
		t.Helper()
		var op api.Operation
		res.Metadata(t, &op)
		do("GET", "/1.0/operations/"+op.ID+"/wait?timeout=30", nil).Metadata(t, &op)
		return op
	}
	t.Cleanup(func() {
		raw, err := os.ReadFile(filepath.Join(state, "moatd.pid"))
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 0 {
			var names []string
			do("GET", "/1.0/instances", nil).Metadata(t, &names)
			for _, n := range names {
				waitOp(do("DELETE", n+"?force=true", nil))
			}
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			if syscall.Kill(pid, 0) == nil {
				t.Errorf("moatd %d did not stop", pid)
			}
		}
		if err := overlay.UnmountUnder(state); err != nil {
			t.Errorf("unmounting under %s: %v", state, err)
		}
		os.RemoveAll(state)
	})
	// What an earlier version of the script left behind.
	leftover := filepath.Join(state, "busybox.tar.gz")
	if err := os.WriteFile(leftover, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(wantOK bool, want ...string) string {
		t.Helper()
		cmd := exec.Command("sh", filepath.Join(root, "scripts", "setup.sh"))
		cmd.Env = append(os.Environ(), "STATE_DIR="+state, "GROUP="+testdaemon.Group, "BIN="+bin)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("setup.sh: %v (want success %v)\n%s", err, wantOK, out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Fatalf("setup.sh output lacks %q:\n%s", w, out)
			}
		}
		if _, err := os.Stat(leftover); err == nil {
			t.Fatalf("setup.sh left %s", leftover)
		}
		return string(out)
	}
	status := func() string {
		var st api.InstanceState
		do("GET", "/1.0/instances/first/state", nil).Metadata(t, &st)
		return st.Status
	}
	images := func() []string {
		var list []string
		do("GET", "/1.0/images", nil).Metadata(t, &list)
		return list
	}

	run(true, "Imported the busybox test image", "Added the image alias 'busybox'", "Launched container 'first'")
	if s := status(); s != "Running" {
		t.Fatalf("first after the first run: %s", s)
	}
	imgs := images()
	if len(imgs) != 1 {
		t.Fatalf("images after the first run: %v", imgs)
	}
	fp := strings.TrimPrefix(imgs[0], "/1.0/images/")

	if out := run(true, "moatd is already running", "Container 'first' already exists."); strings.Contains(out, "Imported") || strings.Contains(out, "alias") {
		t.Fatalf("a second run changed something:\n%s", out)
	}

	if r := do("DELETE", "/1.0/images/aliases/busybox", nil); r.Status != 200 {
		t.Fatalf("delete alias: %d %s", r.Status, r.Raw)
	}
	if op := waitOp(do("PUT", "/1.0/instances/first/state", map[string]any{"action": "stop", "force": true})); op.Status != "Success" {
		t.Fatalf("stop first: %s", op.Err)
	}
	run(true, "already imported", "Added the image alias 'busybox'", "Started the stopped container 'first'")
	var a api.ImageAlias
	do("GET", "/1.0/images/aliases/busybox", nil).Metadata(t, &a)
	if a.Target != fp || len(images()) != 1 {
		t.Fatalf("alias after the third run: %+v, images %v (want the one image %s)", a, images(), fp)
	}
	if s := status(); s != "Running" {
		t.Fatalf("first after the third run: %s", s)
	}

	// A launch that fails: "busybox" now names an image without an init.
	if op := waitOp(do("DELETE", "/1.0/instances/first?force=true", nil)); op.Status != "Success" {
		t.Fatalf("delete first: %s", op.Err)
	}
	if op := waitOp(testdaemon.DoWith(t, c, "POST", "/1.0/images", tinyImage(t, true, "", "no-init"), nil)); op.Status != "Success" {
		t.Fatalf("upload: %s", op.Err)
	} else if r := do("PATCH", "/1.0/images/aliases/busybox", map[string]string{"target": op.Metadata["fingerprint"].(string)}); r.Status != 200 {
		t.Fatalf("retarget alias: %d %s", r.Status, r.Raw)
	}
	run(false, "setup: launching container 'first' failed")
}
