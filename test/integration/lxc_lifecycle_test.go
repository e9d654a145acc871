package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/api"
)

// TestLXCClientLifecycle: the real lxc client's instance commands beyond
// launch and delete: info (state, resources, the empty snapshot list),
// stop (a clean stop without a timeout, lxc's default), start, restart,
// pause/resume, move (rename), the default list columns, stop --force of
// an init that ignores the halt signal while a clean stop waits for it.
func TestLXCClientLifecycle(t *testing.T) {
	lxc := lxcLaunched(t)
	out := lxc.run("info", "c1")
	for _, want := range []string{"Name: c1", "Status: RUNNING", "Type: container", "PID:", "Processes:", "lo:", "inet:  127.0.0.1/8"} {
		if !strings.Contains(out, want) {
			t.Errorf("lxc info lacks %q:\n%s", want, out)
		}
	}
	if out := lxc.run("list"); !strings.Contains(out, "| c1   | RUNNING |") || !strings.Contains(out, "CONTAINER") {
		t.Errorf("lxc list (default columns):\n%s", out)
	}
	lxc.run("stop", "c1")
	if out := lxc.run("list", "--format=csv", "-c", "ns"); strings.TrimSpace(out) != "c1,STOPPED" {
		t.Fatalf("after lxc stop: %q", out)
	}
	if out := lxc.run("info", "c1"); !strings.Contains(out, "Status: STOPPED") {
		t.Errorf("lxc info of a stopped container:\n%s", out)
	}
	lxc.run("start", "c1")
	pid := func() int64 {
		var st api.InstanceState
		lxc.d.Do("GET", "/1.0/instances/c1/state", nil).Metadata(t, &st)
		return st.Pid
	}
	before := pid()
	lxc.run("restart", "c1")
	if after := pid(); after == before || after <= 0 {
		t.Fatalf("lxc restart: init %d, before %d", after, before)
	}
	lxc.run("pause", "c1")
	if out := lxc.run("list", "--format=csv", "-c", "ns"); strings.TrimSpace(out) != "c1,FROZEN" {
		t.Fatalf("after lxc pause: %q", out)
	}
	lxc.run("start", "c1") // lxc resumes a frozen container with start
	if out := lxc.run("list", "--format=csv", "-c", "ns"); strings.TrimSpace(out) != "c1,RUNNING" {
		t.Fatalf("after resuming: %q", out)
	}
	if out, err := lxc.cmd("move", "c1", "c2").CombinedOutput(); err == nil || !strings.Contains(string(out), "running") {
		t.Fatalf("lxc move of a running container: %v %s", err, out)
	}
	lxc.run("stop", "c1", "--force")
	lxc.run("move", "c1", "c2")
	t.Cleanup(func() { lxc.cmd("delete", "-f", "c2").Run() })
	if out := lxc.run("list", "--format=csv", "-c", "ns"); strings.TrimSpace(out) != "c2,STOPPED" {
		t.Fatalf("after lxc move: %q", out)
	}
	lxc.run("start", "c2")

	// An init that ignores the halt signal: lxc stop waits (for ever, as
	// with LXD); lxc stop --force ends both.
	init := filepath.Join(t.TempDir(), "init")
	os.WriteFile(init, []byte(stubbornInit), 0o755)
	lxc.run("file", "push", init, "c2/sbin/init")
	lxc.run("restart", "c2", "--force")
	clean := lxc.cmd("stop", "c2")
	if err := clean.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- clean.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("lxc stop of an init ignoring the halt signal returned: %v", err)
	case <-time.After(time.Second):
	}
	lxc.run("stop", "c2", "--force")
	select {
	case <-done: // the clean stop's operation ended with the forced one
	case <-time.After(hangLimit):
		clean.Process.Kill()
		t.Fatal("lxc stop still waits after lxc stop --force")
	}
	if out := lxc.run("list", "--format=csv", "-c", "ns"); strings.TrimSpace(out) != "c2,STOPPED" {
		t.Fatalf("after lxc stop --force: %q", out)
	}
}

// TestSnapshotAndBackupLists: an instance's snapshot and backup lists are
// empty (both recursion levels), taking either is a 501, and a missing
// instance is a 404 for all of them.
func TestSnapshotAndBackupLists(t *testing.T) {
	d, _ := withImage(t)
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "s1", "source": map[string]string{"type": "image", "alias": "bb"}}))
	for _, kind := range []string{"snapshots", "backups"} {
		for _, q := range []string{"", "?recursion=1"} {
			r := d.Do("GET", "/1.0/instances/s1/"+kind+q, nil)
			if r.Status != 200 || strings.TrimSpace(string(r.Body.Metadata)) != "[]" {
				t.Errorf("GET %s%s: %d %s", kind, q, r.Status, r.Body.Metadata)
			}
		}
		if r := d.Do("POST", "/1.0/instances/s1/"+kind, map[string]string{"name": "x"}); r.Status != 501 {
			t.Errorf("POST %s: %d %q", kind, r.Status, r.Body.Error)
		}
		if r := d.Do("GET", "/1.0/instances/nope/"+kind, nil); r.Status != 404 {
			t.Errorf("GET %s of a missing instance: %d", kind, r.Status)
		}
		if r := d.Do("POST", "/1.0/instances/nope/"+kind, map[string]string{"name": "x"}); r.Status != 404 {
			t.Errorf("POST %s of a missing instance: %d", kind, r.Status)
		}
	}
}
