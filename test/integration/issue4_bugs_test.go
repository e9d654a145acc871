package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// noInstancesLeft fails if the daemon lists any instance or holds any
// container storage: a refused create must leave nothing.
func noInstancesLeft(t *testing.T, d *testdaemon.Daemon) {
	t.Helper()
	var names []string
	d.Do("GET", "/1.0/instances", nil).Metadata(t, &names)
	if len(names) != 0 {
		t.Fatalf("refused create left instances: %v", names)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.Dir, "storage-pools/default/containers")); len(entries) != 0 {
		t.Fatalf("refused create left storage: %v", entries)
	}
}

// gapCreate asks for a stopped instance from the test image.
func gapCreate(d *testdaemon.Daemon, name string, cfg map[string]string, devices map[string]map[string]string) testdaemon.Result {
	return d.Do("POST", "/1.0/instances", map[string]any{"name": name, "source": map[string]string{"type": "image", "alias": "bb"},
		"config": cfg, "devices": devices})
}

// TestForcedPrivilegedNestingTakesEffect: the admin's explicit force of
// privileged+nesting gives the container what nesting gives (a writable
// /proc/sys and /sys), while privileged alone keeps them read-only. The
// probe writes the container's own hostname through /proc/sys, which
// lives in its UTS namespace and so never touches the host.
func TestForcedPrivilegedNestingTakesEffect(t *testing.T) {
	d, _ := withImage(t)
	hostName, _ := os.Hostname()
	launch(t, d, "pn", map[string]string{"security.privileged": "true", "security.nesting": "true", "security.privileged.allow_nesting": "true"})
	launch(t, d, "po", map[string]string{"security.privileged": "true"})
	probe := "echo probe-name > /proc/sys/kernel/hostname && hostname"
	if code, out := execOut(t, d, "pn", "sh", "-c", probe); code != 0 || out != "probe-name\n" {
		t.Fatalf("forced privileged+nesting: /proc/sys not writable: %d %q", code, out)
	}
	if code, out := execOut(t, d, "pn", "sh", "-c", "grep -E ' /(sys|proc/sys) ' /proc/self/mountinfo | grep -c ' ro[ ,]'"); out != "0\n" {
		t.Fatalf("forced privileged+nesting: read-only /sys or /proc/sys mounts: %d %q", code, out)
	}
	if code, out := execOut(t, d, "po", "sh", "-c", probe); code == 0 {
		t.Fatalf("privileged without nesting wrote /proc/sys: %q", out)
	}
	if code, out := execOut(t, d, "po", "hostname"); code != 0 || out != "po\n" {
		t.Fatalf("privileged without nesting: hostname %d %q", code, out)
	}
	if h, _ := os.Hostname(); h != hostName {
		t.Fatalf("the host's name changed: %q -> %q", hostName, h)
	}
}

// TestRootDiskPoolMustExist: a root disk on a pool that does not exist is
// refused naming the pool, on create and on update, and nothing is made.
func TestRootDiskPoolMustExist(t *testing.T) {
	d, _ := withImage(t)
	res := gapCreate(d, "np", nil, map[string]map[string]string{"root": {"type": "disk", "path": "/", "pool": "nope"}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, `"nope"`) {
		t.Fatalf("root disk on pool nope: %d %q", res.Status, res.Body.Error)
	}
	noInstancesLeft(t, d)
	// The legitimate path: the root disk of the default profile.
	mustSucceed(t, d, gapCreate(d, "okp", nil, nil))
	res = d.Do("PATCH", "/1.0/instances/okp", map[string]any{"devices": map[string]any{"root": map[string]string{"type": "disk", "path": "/", "pool": "nope"}}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, `"nope"`) {
		t.Fatalf("PATCH to pool nope: %d %q", res.Status, res.Body.Error)
	}
	// Through the profile okp takes its root disk from.
	res = d.Do("PATCH", "/1.0/profiles/default", map[string]any{"devices": map[string]any{"root": map[string]string{"type": "disk", "path": "/", "pool": "nope"}}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, `"nope"`) {
		t.Fatalf("profile root disk on pool nope: %d %q", res.Status, res.Body.Error)
	}
	var inst api.Instance
	d.Do("GET", "/1.0/instances/okp", nil).Metadata(t, &inst)
	if len(inst.Devices) != 0 || inst.ExpandedDevices["root"]["pool"] != "default" {
		t.Fatalf("refused changes stored: %v %v", inst.Devices, inst.ExpandedDevices)
	}
}

// onlineCPUs parses /sys/devices/system/cpu/online.
func onlineCPUs(t *testing.T) []int {
	t.Helper()
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		var lo, hi int
		if n, _ := fmt.Sscanf(part, "%d-%d", &lo, &hi); n == 1 {
			hi = lo
		}
		for c := lo; c <= hi; c++ {
			out = append(out, c)
		}
	}
	return out
}

// TestLimitsCPUSetAgainstOnlineCPUs: a CPU set is checked against the
// host's online CPUs, not the CPUs moatd's own affinity allows. moatd is
// started pinned to one CPU; naming the host's last online CPU must still
// be accepted, and a CPU the host does not have is a 400 naming the key.
func TestLimitsCPUSetAgainstOnlineCPUs(t *testing.T) {
	testdaemon.RequireRoot(t)
	online := onlineCPUs(t)
	if len(online) < 2 {
		t.Skip("needs at least two online CPUs to pin moatd to fewer than the host has")
	}
	path, fp := testdaemon.BusyboxImage(t)
	testdaemon.Binary(t)
	// moatd inherits the affinity of the thread that forks it.
	runtime.LockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	var one unix.CPUSet
	one.Set(online[0])
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	d := testdaemon.Start(t)
	if err := unix.SchedSetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	runtime.UnlockOSThread()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/images", raw))
	if res := d.Do("POST", "/1.0/images/aliases", map[string]string{"name": "bb", "target": fp}); res.Status != 201 {
		t.Fatalf("alias: %d %s", res.Status, res.Raw)
	}
	t.Cleanup(func() { wait(t, d, d.Do("DELETE", "/1.0/instances/cpus", nil)) })

	last := online[len(online)-1]
	set := fmt.Sprintf("%d,%d", online[0], last)
	for _, bad := range []string{fmt.Sprintf("0,%d", last+1), fmt.Sprintf("%d-%d", last+1, last+8), "0-4096"} {
		res := gapCreate(d, "cpus", map[string]string{"limits.cpu": bad}, nil)
		if res.Status != 400 || !strings.Contains(res.Body.Error, "limits.cpu") {
			t.Errorf("limits.cpu=%s: %d %q, want 400 naming limits.cpu", bad, res.Status, res.Body.Error)
		}
	}
	noInstancesLeft(t, d)
	mustSucceed(t, d, gapCreate(d, "cpus", map[string]string{"limits.cpu": set}, nil))
	res := d.Do("PATCH", "/1.0/instances/cpus", map[string]any{"config": map[string]string{"limits.cpu": strconv.Itoa(len(online))}})
	if res.Status != 200 && res.Status != 202 {
		t.Fatalf("limits.cpu as the host's CPU count with moatd pinned to one: %d %q", res.Status, res.Body.Error)
	}
}
