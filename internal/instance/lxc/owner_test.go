package lxcdriver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDeviceOwner: a device's uid, gid and mode are what the container
// sees on its node, at start and on hot-plug; on the host the node
// belongs to the ids they map to, not to container root's.
func TestDeviceOwner(t *testing.T) {
	spec := testSpec(t)
	spec.Devices = []Device{{Type: CharDevice, Path: "/dev/owned", Major: 1, Minor: 3, Mode: 0o640, UID: 1000, GID: 33}}
	c := startTest(t, spec)
	if _, out, errOut := run(t, c, "stat", "-c", "%u %g %a", "/dev/owned"); out != "1000 33 640\n" {
		t.Fatalf("node at start: %q %s", out, errOut)
	}
	hostU, _ := spec.IDMap.HostID(true, 1000)
	hostG, _ := spec.IDMap.HostID(false, 33)
	var st syscall.Stat_t
	if err := syscall.Stat(devNode(&c.spec, 0), &st); err != nil {
		t.Fatal(err)
	}
	if int64(st.Uid) != hostU || int64(st.Gid) != hostG {
		t.Fatalf("host node owned by %d:%d, want %d:%d", st.Uid, st.Gid, hostU, hostG)
	}
	// Container uid 1000 may use its node (mode 0640 gives it write),
	// uid 1001 in group 33 only read.
	if code, errOut := runAs(t, c, 1000, 1000, "echo x > /dev/owned"); code != 0 {
		t.Fatalf("uid 1000 writing its device: %d %s", code, errOut)
	}
	if code, _ := runAs(t, c, 1001, 1001, "echo x > /dev/owned"); code == 0 {
		t.Fatal("uid 1001 wrote a 0640 device of uid 1000")
	}

	next, err := hotplug(t, c, func(s *Spec) {
		s.Devices = append(s.Devices, Device{Type: CharDevice, Path: "/dev/hot", Major: 1, Minor: 5, Mode: 0o604, UID: 7, GID: 8})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, out, errOut := run(t, c, "stat", "-c", "%u %g %a", "/dev/hot"); out != "7 8 604\n" {
		t.Fatalf("hot-plugged node: %q %s", out, errOut)
	}
	// A changed owner re-plugs the node.
	if _, err := hotplug(t, next, func(s *Spec) { s.Devices[1].UID, s.Devices[1].GID = 0, 0 }); err != nil {
		t.Fatal(err)
	}
	if _, out, errOut := run(t, c, "stat", "-c", "%u %g %a", "/dev/hot"); out != "0 0 604\n" {
		t.Fatalf("re-owned node: %q %s", out, errOut)
	}
}

// TestDeviceOwnerPrivileged: without a map the ids are the host's.
func TestDeviceOwnerPrivileged(t *testing.T) {
	spec := testSpec(t)
	spec.Privileged, spec.IDMap = true, nil
	spec.Devices = []Device{{Type: CharDevice, Path: "/dev/owned", Major: 1, Minor: 3, UID: 1000, GID: 33}}
	c := startTest(t, spec)
	if _, out, errOut := run(t, c, "stat", "-c", "%u %g %a", "/dev/owned"); out != "1000 33 660\n" {
		t.Fatalf("node: %q %s", out, errOut)
	}
}

// TestDeviceOwnerUnmapped: an owner the map does not cover is refused
// before anything is made.
func TestDeviceOwnerUnmapped(t *testing.T) {
	spec := testSpec(t)
	spec.Devices = []Device{{Type: CharDevice, Path: "/dev/x", Major: 1, Minor: 3, UID: 70000}}
	if _, err := New(spec); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "uid 70000") {
		t.Fatalf("unmapped uid: %v", err)
	}
	spec.Devices[0].UID, spec.Devices[0].GID = 0, 65536
	if _, err := New(spec); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "gid 65536") {
		t.Fatalf("unmapped gid: %v", err)
	}
}

// TestUpdateLimitsRollback: a live update the kernel refuses halfway
// (memory and pids written, then a cpuset that a cgroup made inside the
// container still uses) leaves every limit as it was, and the recorded
// limits too; the same update works once the inner cgroup is gone.
func TestUpdateLimitsRollback(t *testing.T) {
	spec := testSpec(t)
	if v, _ := hostCgroupsVersion(t, "cpuset"); v != 1 {
		cannotRun(t, "the refused cpuset relies on v1's rule that a parent's CPUs cover its children's")
	}
	cpus := mustCPUs(t)
	if len(cpus) < 2 {
		cannotRun(t, "needs two online CPUs")
	}
	spec.Limits = Limits{Memory: 256 << 20, Processes: 200}
	c := startTest(t, spec)
	last := strconv.Itoa(cpus[len(cpus)-1])
	// Container root owns its cgroup (cgroup:rw): a child pinned to the
	// last CPU makes the kernel refuse a parent cpuset without it.
	pin := "/sys/fs/cgroup/cpuset/pin"
	if code, _, errOut := run(t, c, "sh", "-c", "mkdir "+pin+" && echo "+last+" > "+pin+"/cpuset.cpus"); code != 0 {
		t.Fatalf("inner cpuset: %s", errOut)
	}
	before := map[string]string{}
	files := [][2]string{{"memory", "memory.limit_in_bytes"}, {"memory", "memory.soft_limit_in_bytes"}, {"pids", "pids.max"}, {"cpuset", "cpuset.cpus"}}
	for _, f := range files {
		before[f[1]] = cgroupValue(t, c, f[0], f[1])
	}
	update := Limits{Memory: 128 << 20, MemoryEnforce: MemoryHard, Processes: 50, CPU: fmt.Sprintf("%d-%d", cpus[0], cpus[0])}
	err := c.UpdateLimits(update)
	if err == nil || !strings.Contains(err.Error(), "cpuset.cpus") {
		t.Fatalf("update over a pinned inner cgroup: %v", err)
	}
	for _, f := range files {
		if got := cgroupValue(t, c, f[0], f[1]); got != before[f[1]] {
			t.Errorf("%s = %s after the failed update, was %s", f[1], got, before[f[1]])
		}
	}
	if c.spec.Limits != spec.Limits {
		t.Errorf("recorded limits %+v after the failed update, want %+v", c.spec.Limits, spec.Limits)
	}

	if code, _, errOut := run(t, c, "rmdir", pin); code != 0 {
		t.Fatal(errOut)
	}
	if err := c.UpdateLimits(update); err != nil {
		t.Fatal(err)
	}
	if got := cgroupValue(t, c, "memory", "memory.limit_in_bytes"); got != strconv.Itoa(128<<20) {
		t.Fatalf("memory.limit_in_bytes = %s", got)
	}
	if c.spec.Limits != update {
		t.Fatalf("recorded limits %+v", c.spec.Limits)
	}
}

// cannotRun fails (CI=true) or skips a test this host cannot run.
func cannotRun(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func hostCgroupsVersion(t *testing.T, ctrl string) (int, error) {
	t.Helper()
	cg, err := hostCgroups()
	if err != nil {
		t.Fatal(err)
	}
	return cg.version(ctrl)
}

// TestCPUCountsSpread: containers given a CPU count land on the CPUs the
// other running containers of the driver use least.
func TestCPUCountsSpread(t *testing.T) {
	spec := testSpec(t)
	if len(mustCPUs(t)) < 2 {
		cannotRun(t, "needs two online CPUs")
	}
	spec.Limits.CPU = "1"
	a := startTest(t, spec)
	spec2 := testSpec(t)
	spec2.Limits.CPU = "1"
	b := startTest(t, spec2)
	ca, cb := cgroupValue(t, a, "cpuset", "cpuset.cpus"), cgroupValue(t, b, "cpuset", "cpuset.cpus")
	if ca == cb {
		t.Fatalf("both containers on CPU %s", ca)
	}
	// A limit change elsewhere does not move a container whose CPU is
	// still among the least used.
	if err := a.UpdateLimits(Limits{CPU: "1", Processes: 100}); err != nil {
		t.Fatal(err)
	}
	if got := cgroupValue(t, a, "cpuset", "cpuset.cpus"); got != ca {
		t.Fatalf("unrelated update moved the container from CPU %s to %s", ca, got)
	}
	// Once b is gone, its CPU is free again.
	if err := b.Stop(true, 0); err != nil {
		t.Fatal(err)
	}
	use, cur := a.cg.cpuUse(spec2.Name)
	if len(cur) != 0 || use[mustAtoi(t, cb)] != 0 {
		t.Fatalf("stopped container still counted: use %v current %v", use, cur)
	}
}

// runAs runs a shell command in c as uid:gid, returning its exit code and
// stderr.
func runAs(t *testing.T, c *Container, uid, gid int, script string) (int, string) {
	t.Helper()
	errR, errW := pipe(t)
	p, err := c.Exec(ExecSpec{Command: []string{"sh", "-c", script}, Env: []string{"PATH=/bin:/usr/bin"}, UID: uid, GID: gid, Stderr: errW})
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(errR)
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return code, string(b)
}

// TestPickCPUs: the least used CPUs first, then those the container is
// on, then the lowest.
func TestPickCPUs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		online  []int
		n       int
		use     map[int]int
		current []int
		want    []int
	}{
		{"idle host", []int{0, 1, 2, 3}, 1, nil, nil, []int{0}},
		{"one busy", []int{0, 1}, 1, map[int]int{0: 1}, nil, []int{1}},
		{"second count", []int{0, 1, 2, 3}, 2, map[int]int{0: 1, 1: 1}, nil, []int{2, 3}},
		{"balanced picks lowest", []int{0, 1, 2, 3}, 2, map[int]int{0: 1, 1: 1, 2: 1, 3: 1}, nil, []int{0, 1}},
		{"stays on its CPU on a tie", []int{0, 1, 2, 3}, 1, map[int]int{0: 1, 1: 1, 2: 1, 3: 1}, []int{2}, []int{2}},
		{"leaves a busier CPU", []int{0, 1}, 1, map[int]int{1: 2}, []int{1}, []int{0}},
		{"holes in the online list", []int{0, 2, 5}, 2, map[int]int{0: 3}, nil, []int{2, 5}},
		{"count above online", []int{0, 1}, 4, nil, nil, []int{0, 1}},
	} {
		if got := pickCPUs(tt.online, tt.n, tt.use, tt.current); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
