package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// openFds counts the daemon's open file descriptors.
func openFds(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestLiveUpdatesLeakNoDescriptors: every update of a running container
// replaces the daemon's driver handle, which holds descriptors for the run
// (init's pidfd, cgroup usage files, a netlink socket in the container's
// namespace). A stream of updates, each followed by a state read that
// opens them again, must not grow the daemon's descriptor count, or a
// caller allowed to edit one container could exhaust the daemon's.
func TestLiveUpdatesLeakNoDescriptors(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "fd1", nil)
	// One client, one connection: the count then moves only with what the
	// daemon opens itself.
	c := d.HTTPClient()
	var st api.InstanceState
	update := func(i int) {
		res := testdaemon.DoWith(t, c, "PATCH", "/1.0/instances/fd1", map[string]any{"config": map[string]string{"user.n": fmt.Sprint(i)}}, nil)
		var op api.Operation
		res.Metadata(t, &op)
		testdaemon.DoWith(t, c, "GET", "/1.0/operations/"+op.ID+"/wait?timeout=30", nil, nil).Metadata(t, &op)
		if op.Status != "Success" {
			t.Fatalf("update %d: %s", i, op.Err)
		}
		testdaemon.DoWith(t, c, "GET", "/1.0/instances/fd1/state", nil, nil).Metadata(t, &st)
		if st.Status != "Running" || st.Network["lo"].State != "up" {
			t.Fatalf("state after update %d: %+v", i, st)
		}
	}
	for i := range 5 { // let the daemon reach its steady state
		update(i)
	}
	before := openFds(t, d.PID())
	for i := range 40 {
		update(100 + i)
	}
	if after := openFds(t, d.PID()); after > before+5 {
		t.Fatalf("the daemon's descriptors grew from %d to %d over 40 updates", before, after)
	}
}

// TestFailedLiveChangeKeepsRunningView: after a device change that could
// not be applied to the running container (stored for the next start),
// the next live change is worked out from what the container really runs:
// adding another disk works, and removing the one never applied is fine.
func TestFailedLiveChangeKeepsRunningView(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "lv1", nil)
	src := hostSource(t)
	if code, _ := execOut(t, d, "lv1", "sh", "-c", "mkdir -p /home/u && ln -s /etc /home/u/link && chown -h 1000:1000 /home/u/link"); code != 0 {
		t.Fatal("planting the symlink failed")
	}
	res := putDevices(t, d, "lv1", map[string]map[string]string{
		"z": {"type": "disk", "source": src, "path": "/home/u/link/z"},
	})
	if res.Status < 400 || !strings.Contains(res.Body.Error, "next start") {
		t.Fatalf("unappliable change: %d %q", res.Status, res.Body.Error)
	}
	// Add a disk that can be mounted: only it is new to the container.
	res = putDevices(t, d, "lv1", map[string]map[string]string{
		"z": {"type": "disk", "source": src, "path": "/home/u/link/z"},
		"b": {"type": "disk", "source": src, "path": "/mnt/b", "readonly": "true"},
	})
	if res.Status < 400 || !strings.Contains(res.Body.Error, "next start") {
		// z is still not appliable, so the change as a whole is not.
		t.Logf("second change: %d %q", res.Status, res.Body.Error)
	}
	// Drop z: now the running container differs from the config only by b.
	res = putDevices(t, d, "lv1", map[string]map[string]string{
		"b": {"type": "disk", "source": src, "path": "/mnt/b", "readonly": "true"},
	})
	if res.Status != 202 && res.Status != 200 {
		t.Fatalf("removing the never-applied disk and keeping b: %d %q", res.Status, res.Body.Error)
	}
	mustSucceed(t, d, res)
	if code, out := execOut(t, d, "lv1", "sh", "-c", "grep -c ' /mnt/b ' /proc/self/mountinfo; if test -e /etc/z; then echo z-mounted; fi"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("mounts after the changes: %d %q", code, out)
	}
}
