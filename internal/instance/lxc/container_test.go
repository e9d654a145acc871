package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestUnprivileged(t *testing.T) {
	spec := testSpec(t)
	c := startTest(t, spec)

	code, out, errOut := run(t, c, "cat", "/proc/self/uid_map")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := fmt.Sprintf("0 %d 65536", spec.IDMap[0].Hostid)
	if got := strings.Join(strings.Fields(out), " "); got != want {
		t.Fatalf("uid_map inside = %q, want %q", got, want)
	}
	// The image is idmapped, not chowned: root-owned on the host, root
	// owned inside.
	_, out, _ = run(t, c, "stat", "-c", "%u:%g", "/bin/busybox")
	if strings.TrimSpace(out) != "0:0" {
		t.Fatalf("busybox owner inside = %q", out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(sharedRootfs(t)+"/bin/busybox", &st); err != nil || st.Uid != 0 {
		t.Fatalf("image was chowned on the host: uid %d %v", st.Uid, err)
	}

	if _, out, _ := run(t, c, "hostname"); out != spec.Name+"\n" {
		t.Fatalf("hostname %q", out)
	}

	s, err := c.State()
	if err != nil || s.Status != StatusRunning || s.PID <= 0 || s.Processes < 1 || s.MemoryUsage <= 0 || s.CPUUsage <= 0 {
		t.Fatalf("state %+v %v", s, err)
	}
	checkDir(t, spec, int(spec.IDMap[0].Hostid))

	if err := c.Start(); !errors.Is(err, ErrRunning) {
		t.Fatalf("second start: %v", err)
	}
	if err := c.Stop(false, stopTimeout); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if left := leftovers(c.cg, spec.Name); len(left) > 0 {
		t.Fatalf("cgroups left after stop: %v", left)
	}
	if s, _ := c.State(); s.Status != StatusStopped {
		t.Fatalf("state after stop %+v", s)
	}
}

// checkDir proves the per-container dir is mode 0100, owned by the
// container's root, and closed to other host users.
func checkDir(t *testing.T, spec Spec, owner int) {
	t.Helper()
	fi, err := os.Stat(spec.dir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o100 || int(fi.Sys().(*syscall.Stat_t).Uid) != owner {
		t.Fatalf("container dir mode %v uid %d, want 0100 uid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, owner)
	}
	// 65534 stands for any host user without capabilities.
	cmd := exec.Command("/bin/busybox", "cat", spec.dir()+"/config")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("unprivileged host user read the container config: %v %s", err, out)
	}
}

func TestPrivileged(t *testing.T) {
	spec := testSpec(t)
	spec.Privileged, spec.IDMap = true, nil
	c := startTest(t, spec)

	_, out, _ := run(t, c, "cat", "/proc/self/uid_map")
	if got := strings.Join(strings.Fields(out), " "); got != "0 0 4294967295" {
		t.Fatalf("uid_map = %q", got)
	}
	checkDir(t, spec, 0)
	if err := c.Stop(false, stopTimeout); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
}
