package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// lxcCgroupDirs walks every hierarchy under /sys/fs/cgroup, a few levels
// deep (on cgroup v1 hybrid liblxc's directories sit under the cgroup of
// moatd, which differs per hierarchy), for directories named base.
func lxcCgroupDirs(t testing.TB, base string) []string {
	t.Helper()
	hier, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if e.Name() == base {
				out = append(out, p)
				continue
			}
			// Below a container's own cgroups there is nothing of liblxc's.
			if depth < 4 && !strings.HasPrefix(e.Name(), "lxc.") {
				walk(p, depth+1)
			}
		}
	}
	for _, h := range hier {
		// cpu and cpuacct are symlinks to cpu,cpuacct: walk that once.
		if h.IsDir() {
			walk(filepath.Join("/sys/fs/cgroup", h.Name()), 1)
		}
	}
	return out
}

// monitorCgroup is the name of the lxc.monitor cgroup of a running
// instance, read from the cgroup membership of its init's parent (the
// monitor), so that it carries the daemon's tag and matches no other
// daemon's leftovers.
func monitorCgroup(t testing.TB, d *testdaemon.Daemon, name string) string {
	t.Helper()
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/"+name+"/state", nil).Metadata(t, &st)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
	if err != nil {
		t.Fatalf("init of %s: %v", name, err)
	}
	var ppid int
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", ppid))
	if err != nil {
		t.Fatalf("monitor of %s: %v", name, err)
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if b := filepath.Base(line); strings.HasPrefix(b, "lxc.monitor.") && strings.HasSuffix(b, "."+name) {
			return b
		}
	}
	t.Fatalf("the parent of %s's init is in no lxc.monitor cgroup: %s", name, cg)
	return ""
}

// TestMonitorCgroupsRemovedAfterStop: the walk finds the container's
// lxc.monitor cgroups while it runs, and none is left after a stop or a
// delete.
func TestMonitorCgroupsRemovedAfterStop(t *testing.T) {
	d, _ := withImage(t)
	const name = "gapmon4"
	launch(t, d, name, nil)
	mon := monitorCgroup(t, d, name)
	running := lxcCgroupDirs(t, mon)
	if len(running) == 0 {
		t.Fatalf("the walk finds no %s of a running container", mon)
	}
	t.Logf("monitor cgroups while running: %v", running)
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/"+name+"/state", map[string]any{"action": "stop", "timeout": 10}))
	if left := lxcCgroupDirs(t, mon); len(left) != 0 {
		t.Fatalf("monitor cgroups left after a clean stop: %v", left)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/"+name+"/state", map[string]any{"action": "start"}))
	if len(lxcCgroupDirs(t, mon)) == 0 {
		t.Fatal("no lxc.monitor cgroup after restart")
	}
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/"+name+"?force=true", nil))
	payload := "lxc.payload." + strings.TrimPrefix(mon, "lxc.monitor.")
	if left := append(lxcCgroupDirs(t, mon), lxcCgroupDirs(t, payload)...); len(left) != 0 {
		t.Fatalf("cgroups left after a forced delete: %v", left)
	}
}

// TestContainerCgroupNamespaceAndCaps: the container has its own cgroup
// namespace whose root is its own cgroup, and an unprivileged container's
// bounding set lacks the dropped capabilities but keeps the usual ones.
func TestContainerCgroupNamespaceAndCaps(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "ns1", nil)
	host, err := os.Readlink("/proc/self/ns/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	code, inside := execOut(t, d, "ns1", "readlink", "/proc/1/ns/cgroup")
	if code != 0 || !strings.HasPrefix(inside, "cgroup:[") || strings.TrimSpace(inside) == host {
		t.Fatalf("cgroup namespace: inside %q host %q", inside, host)
	}
	_, cg := execOut(t, d, "ns1", "cat", "/proc/self/cgroup")
	for _, line := range strings.Split(strings.TrimSpace(cg), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[2] != "/" {
			t.Errorf("/proc/self/cgroup inside shows a path other than /: %q", line)
		}
	}

	_, status := execOut(t, d, "ns1", "grep", "CapBnd", "/proc/1/status")
	hex := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(status), "CapBnd:"))
	bnd, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatalf("CapBnd %q: %v", status, err)
	}
	for capName, bit := range map[string]uint{"sys_module": 16, "sys_rawio": 17, "sys_time": 25, "mac_override": 32, "mac_admin": 33} {
		if bnd&(1<<bit) != 0 {
			t.Errorf("CapBnd %#x keeps %s", bnd, capName)
		}
	}
	for capName, bit := range map[string]uint{"chown": 0, "setuid": 7, "sys_admin": 21, "net_admin": 12} {
		if bnd&(1<<bit) == 0 {
			t.Errorf("CapBnd %#x lacks %s", bnd, capName)
		}
	}
}

// uidRanges reads a /proc/self/uid_map text into host [start, end) ranges.
func uidRanges(t *testing.T, m string) [][2]int64 {
	t.Helper()
	var out [][2]int64
	for _, line := range strings.Split(strings.TrimSpace(m), "\n") {
		var ns, host, n int64
		if _, err := fmt.Sscan(line, &ns, &host, &n); err != nil {
			t.Fatalf("uid_map line %q: %v", line, err)
		}
		out = append(out, [2]int64{host, host + n})
	}
	return out
}

func uidMap(t *testing.T, d *testdaemon.Daemon, name string) string {
	t.Helper()
	code, m := execOut(t, d, name, "cat", "/proc/self/uid_map")
	if code != 0 {
		t.Fatalf("uid_map of %s: %d", name, code)
	}
	return m
}

// TestIDMapsThroughAPI: isolated containers get disjoint host ranges of
// the requested size at the requested base, non-isolated ones share the
// full map, exhaustion names what is left, and raw.idmap may not reach
// into allocated host ids.
func TestIDMapsThroughAPI(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "iso1", nil)
	launch(t, d, "iso2", map[string]string{"security.idmap.size": "131072"})
	r1, r2 := uidRanges(t, uidMap(t, d, "iso1")), uidRanges(t, uidMap(t, d, "iso2"))
	for _, a := range r1 {
		for _, b := range r2 {
			if a[0] < b[1] && b[0] < a[1] {
				t.Fatalf("isolated maps overlap: %v and %v", r1, r2)
			}
		}
	}
	if len(r2) != 1 || r2[0][1]-r2[0][0] != 131072 {
		t.Fatalf("security.idmap.size=131072 gives %v", r2)
	}
	i2 := gapInstance(t, d, "iso2")
	if i2.Config["volatile.idmap.base"] != strconv.FormatInt(r2[0][0], 10) {
		t.Fatalf("volatile.idmap.base %q, map %v", i2.Config["volatile.idmap.base"], r2)
	}
	var cur []struct {
		Hostid, Maprange int64
	}
	if err := json.Unmarshal([]byte(i2.Config["volatile.idmap.current"]), &cur); err != nil || len(cur) == 0 || cur[0].Hostid != r2[0][0] || cur[0].Maprange != 131072 {
		t.Fatalf("volatile.idmap.current %q (%v)", i2.Config["volatile.idmap.current"], err)
	}
	if i2.Config["volatile.idmap.next"] != i2.Config["volatile.idmap.current"] {
		t.Fatalf("volatile.idmap.next %q != current", i2.Config["volatile.idmap.next"])
	}

	// Non-isolated containers share the whole host range.
	launch(t, d, "sh1", map[string]string{"security.idmap.isolated": "false"})
	launch(t, d, "sh2", map[string]string{"security.idmap.isolated": "false"})
	m1, m2 := uidMap(t, d, "sh1"), uidMap(t, d, "sh2")
	full := uidRanges(t, m1)
	if m1 != m2 || full[0][1]-full[0][0] <= 131072 {
		t.Fatalf("non-isolated maps: %q %q", m1, m2)
	}

	// security.idmap.base: a free block near the end of the host range.
	base := full[len(full)-1][1] - 10*65536
	launch(t, d, "based", map[string]string{"security.idmap.base": strconv.FormatInt(base, 10)})
	if rb := uidRanges(t, uidMap(t, d, "based")); rb[0][0] != base || rb[0][1]-rb[0][0] != 65536 {
		t.Fatalf("security.idmap.base=%d gives %v", base, rb)
	}
	if got := gapInstance(t, d, "based").Config["volatile.idmap.base"]; got != strconv.FormatInt(base, 10) {
		t.Fatalf("volatile.idmap.base %q, want %d", got, base)
	}

	// Exhaustion: more ids than the host range has left.
	size := full[len(full)-1][1] - full[0][0] - 65536
	res := gapCreate(d, "huge", map[string]string{"security.idmap.size": strconv.FormatInt(size, 10)}, nil)
	if res.Status < 400 || res.Status >= 500 || !strings.Contains(res.Body.Error, "left") {
		t.Fatalf("exhausting the host range: %d %q", res.Status, res.Body.Error)
	}
	t.Logf("exhaustion: %s", res.Body.Error)
	if !strings.ContainsAny(res.Body.Error, "0123456789") {
		t.Fatalf("exhaustion error does not say how many ids are left: %q", res.Body.Error)
	}
	if r := d.Do("GET", "/1.0/instances/huge", nil); r.Status != 404 {
		t.Fatalf("the exhausted create left an instance: %d", r.Status)
	}

	// raw.idmap with a host id inside an allocated block is refused;
	// one outside every block is accepted.
	into := r1[0][0] + 10
	res = d.Do("PATCH", "/1.0/instances/iso2", map[string]any{"config": map[string]string{"raw.idmap": fmt.Sprintf("both %d 1000", into)}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, "raw.idmap") {
		t.Fatalf("raw.idmap into iso1's block: %d %q", res.Status, res.Body.Error)
	}
	res = d.Do("PATCH", "/1.0/instances/iso2", map[string]any{"config": map[string]string{"raw.idmap": fmt.Sprintf("both %d 1000", r2[0][0]+5)}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, "raw.idmap") {
		t.Fatalf("raw.idmap into its own block: %d %q", res.Status, res.Body.Error)
	}
	if got := gapInstance(t, d, "iso2").Config["raw.idmap"]; got != "" {
		t.Fatalf("refused raw.idmap stored: %q", got)
	}
}

// TestNestingAtRuntime: security.nesting=true gives the container a
// writable /proc/sys and /sys, so it can set the sysctls of its own
// namespaces (kernel.shmmax of its IPC namespace, owned by its root);
// without nesting the same write fails on the read-only mount. The value
// written is the one just read.
func TestNestingAtRuntime(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "nest", map[string]string{"security.nesting": "true"})
	launch(t, d, "flat", nil)
	sysctl := "v=$(cat /proc/sys/kernel/shmmax) && echo $v > /proc/sys/kernel/shmmax"
	roMounts := "grep -E ' /(proc/sys|sys) ' /proc/self/mountinfo | grep -c ' ro[ ,]'"
	if code, out := execOut(t, d, "nest", "sh", "-c", sysctl); code != 0 {
		t.Errorf("nesting: writing an IPC sysctl: %d %q", code, out)
	}
	if _, out := execOut(t, d, "nest", "sh", "-c", roMounts); out != "0\n" {
		t.Errorf("nesting: read-only /proc/sys or /sys mounts: %q", out)
	}
	if code, _ := execOut(t, d, "flat", "sh", "-c", sysctl); code == 0 {
		t.Error("without nesting: /proc/sys was writable")
	}
	if _, out := execOut(t, d, "flat", "sh", "-c", roMounts); out != "2\n" {
		t.Errorf("without nesting: want /proc/sys and /sys read-only, %q are", out)
	}
	// Both can read it.
	if code, out := execOut(t, d, "flat", "cat", "/proc/sys/kernel/shmmax"); code != 0 || out == "" {
		t.Errorf("without nesting: reading /proc/sys: %d %q", code, out)
	}
}

// TestPrivilegedSysReadOnly: a privileged container's root is host root,
// so /sys and /proc/sys stay read-only; reading works. The writes put back
// the value just read, so even a failing protection changes nothing.
func TestPrivilegedSysReadOnly(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "priv", map[string]string{"security.privileged": "true"})
	if _, out := execOut(t, d, "priv", "cat", "/proc/self/uid_map"); strings.Join(strings.Fields(out), " ") != "0 0 4294967295" {
		t.Fatalf("privileged uid_map: %q", out)
	}
	for _, f := range []string{"/sys/kernel/mm/ksm/run", "/proc/sys/vm/swappiness"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("host lacks %s: %v", f, err)
		}
		code, out := execOut(t, d, "priv", "sh", "-c", "v=$(cat "+f+") && echo read $v && echo $v > "+f)
		if !strings.HasPrefix(out, "read ") {
			t.Errorf("reading %s: %q", f, out)
		}
		if code == 0 {
			t.Errorf("privileged container wrote %s", f)
		}
	}
}

// TestIsolatedDefaultProfile: a fresh install's default profile isolates.
func TestIsolatedDefaultProfile(t *testing.T) {
	d := testdaemon.Start(t)
	var p api.Profile
	d.Do("GET", "/1.0/profiles/default", nil).Metadata(t, &p)
	if p.Config["security.idmap.isolated"] != "true" {
		t.Fatalf("default profile: %v", p.Config)
	}
}
