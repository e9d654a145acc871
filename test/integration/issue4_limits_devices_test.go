package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// cgroupFile reads a file of a running instance's cgroup in the given v1
// controller, found through its init's membership as the host sees it.
func cgroupFile(t *testing.T, d *testdaemon.Daemon, name, controller, file string) string {
	t.Helper()
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/"+name+"/state", nil).Metadata(t, &st)
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		t.Fatalf("cgroups of %s: %v", name, err)
	}
	for _, line := range strings.Split(string(cg), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && f[1] == controller {
			b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, f[2], file))
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("%s is in no %s cgroup: %s", name, controller, cg)
	return ""
}

func cgroupInt(t *testing.T, d *testdaemon.Daemon, name, controller, file string) int64 {
	t.Helper()
	v := cgroupFile(t, d, name, controller, file)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s/%s = %q", controller, file, v)
	}
	return n
}

// TestForkBombHitsProcessLimit: a shell spawning background sleeps in a
// container with limits.processes=20 runs into fork failures, and the
// container's pids cgroup never holds more than 20 tasks.
func TestForkBombHitsProcessLimit(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "bomb", map[string]string{"limits.processes": "20"})
	if got := cgroupFile(t, d, "bomb", "pids", "pids.max"); got != "20" {
		t.Fatalf("pids.max = %q", got)
	}
	// The inner shell stops at its first failed fork; its stderr is
	// folded into the recorded output.
	bomb := `sh -c 'i=0; while [ $i -lt 60 ]; do sleep 300 & i=$((i+1)); echo started $i; done' 2>&1; echo done`
	_, out := execOut(t, d, "bomb", "sh", "-c", bomb)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	started := 0
	for _, l := range lines {
		if n, err := strconv.Atoi(strings.TrimPrefix(l, "started ")); err == nil {
			started = n
		}
	}
	if !strings.Contains(out, "fork") || started >= 60 || started == 0 {
		t.Fatalf("the fork bomb did not hit the limit (started %d):\n%s", started, out)
	}
	if cur := cgroupInt(t, d, "bomb", "pids", "pids.current"); cur > 20 || cur < int64(started) {
		t.Fatalf("pids.current = %d with %d sleeps started, limit 20", cur, started)
	}
	if ev := cgroupFile(t, d, "bomb", "pids", "pids.events"); ev == "max 0" {
		t.Fatalf("pids.events counts no refused fork: %q", ev)
	}
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/bomb/state", nil).Metadata(t, &st)
	if st.Processes > 20 || st.Processes < int64(started) {
		t.Fatalf("state processes = %d, started %d", st.Processes, started)
	}
}

func memTotal(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	t.Fatal("no MemTotal")
	return 0
}

// TestMemoryLimitsThroughAPI: a percentage is applied as that share of
// MemTotal; bad values are 400s naming the key; a profile change reaches
// the running container's cgroup.
func TestMemoryLimitsThroughAPI(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "pct", map[string]string{"limits.memory": "10%"})
	want := memTotal(t) / 10
	got := cgroupInt(t, d, "pct", "memory", "memory.limit_in_bytes")
	if diff := got - want; diff > 1<<20 || diff < -(1<<20) {
		t.Fatalf("limits.memory=10%%: memory.limit_in_bytes %d, want about %d", got, want)
	}

	for _, bad := range []struct{ key, val string }{
		{"limits.memory.enforce", "maybe"},
		{"limits.cpu", "0-99"},
		{"limits.cpu", "0,1-"},
		{"limits.memory", "101%"},
		{"limits.memory", "0%"},
		{"limits.memory", "1MiB"},
	} {
		res := gapCreate(d, "badlim", map[string]string{bad.key: bad.val}, nil)
		if res.Status != 400 || !strings.Contains(res.Body.Error, bad.key) {
			t.Errorf("%s=%s: %d %q", bad.key, bad.val, res.Status, res.Body.Error)
		}
	}
	if r := d.Do("GET", "/1.0/instances/badlim", nil); r.Status != 404 {
		t.Fatalf("refused creates left an instance: %d", r.Status)
	}

	if r := d.Do("POST", "/1.0/profiles", map[string]any{"name": "mem", "config": map[string]string{"limits.memory": "256MiB"}}); r.Status != 201 {
		t.Fatalf("profile: %d %s", r.Status, r.Raw)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "viaprof", "profiles": []string{"default", "mem"},
		"source": map[string]string{"type": "image", "alias": "bb"}, "start": true}))
	if got := cgroupInt(t, d, "viaprof", "memory", "memory.limit_in_bytes"); got != 256<<20 {
		t.Fatalf("profile limit at start: %d", got)
	}
	if r := d.Do("PATCH", "/1.0/profiles/mem", map[string]any{"config": map[string]string{"limits.memory": "128MiB"}}); r.Status != 200 {
		t.Fatalf("profile change: %d %s", r.Status, r.Raw)
	}
	if got := cgroupInt(t, d, "viaprof", "memory", "memory.limit_in_bytes"); got != 128<<20 {
		t.Fatalf("profile change did not reach the running container: %d", got)
	}
	// A refused profile change leaves the cgroup alone.
	if r := d.Do("PATCH", "/1.0/profiles/mem", map[string]any{"config": map[string]string{"limits.memory": "200%"}}); r.Status != 400 {
		t.Fatalf("bad profile limit: %d", r.Status)
	}
	if got := cgroupInt(t, d, "viaprof", "memory", "memory.limit_in_bytes"); got != 128<<20 {
		t.Fatalf("a refused profile change altered the cgroup: %d", got)
	}
}

// loopDevice attaches a loop device to a small file holding marker and
// returns its path; it is detached at the end of the test, after the
// instances using it are deleted.
func loopDevice(t *testing.T, marker string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "blk.img")
	data := make([]byte, 1<<20)
	copy(data, marker)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

// TestDevicesAtStart: unix-block and unix-char devices given at create
// are usable inside once started; bad device definitions are 400s naming
// what is wrong, and nothing is created.
func TestDevicesAtStart(t *testing.T) {
	const marker = "GAP4-BLOCK-MARKER"
	dev := loopDevice(t, marker)
	d, _ := withImage(t)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	major, minor := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "devs", "start": true,
		"source": map[string]string{"type": "image", "alias": "bb"},
		"devices": map[string]any{
			"blk":  map[string]string{"type": "unix-block", "source": dev, "path": "/dev/gapblk"},
			"zero": map[string]string{"type": "unix-char", "source": "/dev/zero", "path": "/dev/gapzero"},
			"null": map[string]string{"type": "unix-char", "path": "/dev/gapnull", "major": "1", "minor": "3", "mode": "0666"},
		}}))
	t.Cleanup(func() { wait(t, d, d.Do("DELETE", "/1.0/instances/devs?force=true", nil)) })

	want := fmt.Sprintf("b %x:%x\n", major, minor)
	if code, out := execOut(t, d, "devs", "sh", "-c", "stat -c '%F' /dev/gapblk | cut -c1 && stat -c '%t:%T' /dev/gapblk"); code != 0 || strings.Replace(out, "\n", " ", 1) != want {
		t.Fatalf("/dev/gapblk: %d %q, want %q", code, out, want)
	}
	if code, out := execOut(t, d, "devs", "head", "-c", strconv.Itoa(len(marker)), "/dev/gapblk"); code != 0 || out != marker {
		t.Fatalf("reading the block device inside: %d %q", code, out)
	}
	if code, out := execOut(t, d, "devs", "sh", "-c", "printf WRITTEN | dd of=/dev/gapblk bs=512 seek=8 conv=notrunc 2>/dev/null && sync"); code != 0 {
		t.Fatalf("writing the block device inside: %d %q", code, out)
	}
	buf := make([]byte, 7)
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(buf, 8*512)
	f.Close()
	if err != nil || !bytes.Equal(buf, []byte("WRITTEN")) {
		t.Fatalf("the host sees %q at the written offset (%v)", buf, err)
	}
	if code, out := execOut(t, d, "devs", "sh", "-c", "head -c 4 /dev/gapzero | wc -c && stat -c '%t:%T' /dev/gapzero"); code != 0 || out != "4\n1:5\n" {
		t.Fatalf("/dev/gapzero: %d %q", code, out)
	}
	if code, out := execOut(t, d, "devs", "sh", "-c", "echo x > /dev/gapnull && stat -c '%t:%T %a' /dev/gapnull"); code != 0 || out != "1:3 666\n" {
		t.Fatalf("/dev/gapnull: %d %q", code, out)
	}
	// A node of a device not in the spec stays unusable (device cgroup).
	if code, _ := execOut(t, d, "devs", "sh", "-c", fmt.Sprintf("mknod /tmp/other b %d %d && head -c 1 /tmp/other", major, minor+1000)); code == 0 {
		t.Fatal("a block device outside the spec was readable")
	}

	for _, bad := range []struct {
		dev  map[string]string
		want string
	}{
		{map[string]string{"type": "unix-char", "source": "/dev/null", "bogus": "1"}, `"bogus"`},
		{map[string]string{"type": "unix-char", "path": "/dev/x", "major": "x", "minor": "1"}, `"major"`},
		{map[string]string{"type": "unix-char", "path": "/dev/x", "major": "1", "minor": "99999999"}, `"minor"`},
		{map[string]string{"type": "unix-char", "source": "/dev/null", "mode": "999"}, `"mode"`},
		{map[string]string{"type": "unix-char", "source": "/dev/null", "mode": "rw"}, `"mode"`},
		{map[string]string{"type": "disk", "source": "/tmp", "path": "/mnt/x", "readonly": "maybe"}, `"readonly"`},
		{map[string]string{"type": "nic", "nictype": "bridged", "parent": "lxdbr0"}, `"nic"`},
		{map[string]string{"type": "disk", "path": "/", "pool": "default"}, `"/"`},
	} {
		res := gapCreate(d, "baddev", nil, map[string]map[string]string{"x": bad.dev})
		if res.Status != 400 || !strings.Contains(res.Body.Error, bad.want) {
			t.Errorf("%v: %d %q, want 400 naming %s", bad.dev, res.Status, res.Body.Error, bad.want)
		}
	}
	if r := d.Do("GET", "/1.0/instances/baddev", nil); r.Status != 404 {
		t.Fatalf("refused creates left an instance: %d", r.Status)
	}
}
