package lxcdriver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// hostDir makes a directory the container's root can reach: t.TempDir()
// is 0700 and would hide it.
func hostDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp(testRoot, "disk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDiskMounts(t *testing.T) {
	ro, rw := hostDir(t, 0o755), hostDir(t, 0o777)
	if err := os.WriteFile(filepath.Join(ro, "data"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t)
	spec.Mounts = []Mount{
		{Source: ro, Path: "/mnt/ro dir", ReadOnly: true}, // a space needs fstab escaping
		{Source: rw, Path: "/mnt/rw"},
	}
	c := startTest(t, spec)

	if code, out, _ := run(t, c, "cat", "/mnt/ro dir/data"); code != 0 || out != "hello\n" {
		t.Fatalf("read: %d %q", code, out)
	}
	code, _, errOut := run(t, c, "touch", "/mnt/ro dir/new")
	if code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Fatalf("write to read-only mount: exit %d %q", code, errOut)
	}
	if fileExists(filepath.Join(ro, "new")) {
		t.Fatal("file created through the read-only mount")
	}
	if code, _, errOut := run(t, c, "touch", "/mnt/rw/new"); code != 0 {
		t.Fatalf("write to rw mount: %d %s", code, errOut)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(rw, "new"), &st); err != nil {
		t.Fatal(err)
	}
	// Written by container root, so owned by its host id.
	if int64(st.Uid) != spec.IDMap[0].Hostid {
		t.Fatalf("file written by container root has host uid %d", st.Uid)
	}
}

func TestUnixDevices(t *testing.T) {
	spec := testSpec(t)
	spec.Devices = []Device{
		{Type: CharDevice, Path: "/dev/mynull", Major: 1, Minor: 3, Mode: 0o666},
		{Type: CharDevice, Path: "/dev/extra/zero", Major: 1, Minor: 5},
	}
	c := startTest(t, spec)

	_, out, _ := run(t, c, "stat", "-c", "%F %t:%T %a %u", "/dev/mynull", "/dev/extra/zero")
	if want := "character special file 1:3 666 0\ncharacter special file 1:5 660 0\n"; out != want {
		t.Fatalf("device nodes:\n%s", out)
	}
	if code, _, errOut := run(t, c, "sh", "-c", "echo x > /dev/mynull && head -c 4 /dev/extra/zero | wc -c"); code != 0 {
		t.Fatalf("using devices: %d %s", code, errOut)
	}
}

// TestPrivilegedConfinement checks what keeps a privileged container's
// root from being host root in effect: the device cgroup allow-list, the
// seccomp deny list and the dropped capabilities.
func TestPrivilegedConfinement(t *testing.T) {
	spec := testSpec(t)
	spec.Privileged, spec.IDMap = true, nil
	c := startTest(t, spec)

	// mknod is allowed ("m"), opening a disk is not.
	code, _, errOut := run(t, c, "sh", "-c", "mknod /tmp/disk b 8 0 && head -c 1 /tmp/disk")
	if code == 0 || !strings.Contains(errOut, "Operation not permitted") {
		t.Fatalf("block device outside the allow-list: exit %d %q", code, errOut)
	}
	// init_module is denied by seccomp with ENOSYS (EPERM would be the
	// capability check, which comes later in the kernel).
	code, _, errOut = run(t, c, "insmod", "/bin/busybox")
	// busybox words ENOSYS as "kernel does not support requested operation".
	if code == 0 || !strings.Contains(errOut, "does not support") {
		t.Fatalf("insmod: exit %d %q", code, errOut)
	}
	_, out, _ := run(t, c, "grep", "CapBnd", "/proc/self/status")
	mask := parseHex(t, strings.TrimSpace(strings.TrimPrefix(out, "CapBnd:")))
	for _, capNum := range []uint{16, 17, 22, 25, 32, 33, 34} { // sys_module sys_rawio sys_boot sys_time mac_override mac_admin syslog
		if mask&(1<<capNum) != 0 {
			t.Errorf("capability %d not dropped (CapBnd %x)", capNum, mask)
		}
	}
	if mask&(1<<21) == 0 { // sys_admin stays: privileged means privileged
		t.Errorf("sys_admin unexpectedly dropped")
	}
	// /proc/sys is read-only (proc:mixed).
	if code, _, _ := run(t, c, "sh", "-c", "echo 1 > /proc/sys/kernel/sysrq"); code == 0 {
		t.Fatal("wrote to /proc/sys from a privileged container")
	}
}

func parseHex(t *testing.T, s string) uint64 {
	var v uint64
	for _, r := range s {
		d := strings.IndexRune("0123456789abcdef", r)
		if d < 0 {
			t.Fatalf("bad hex %q", s)
		}
		v = v<<4 | uint64(d)
	}
	return v
}

func TestFreeze(t *testing.T) {
	c := startTest(t, testSpec(t))
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.State(); s.Status != StatusFrozen {
		t.Fatalf("status %s", s.Status)
	}
	if err := c.Unfreeze(); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.State(); s.Status != StatusRunning {
		t.Fatalf("status %s", s.Status)
	}
	if code, _, _ := run(t, c, "true"); code != 0 {
		t.Fatal("exec after unfreeze failed")
	}
}

func TestLifecycleErrors(t *testing.T) {
	spec := testSpec(t)
	c, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(false, stopTimeout); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stop stopped: %v", err)
	}
	if err := c.Freeze(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("freeze stopped: %v", err)
	}
	if err := c.UpdateLimits(Limits{}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("limits on stopped: %v", err)
	}
	if s, err := c.State(); err != nil || s.Status != StatusStopped {
		t.Fatalf("state %+v %v", s, err)
	}

	c = startTest(t, spec)
	if err := c.Delete(); !errors.Is(err, ErrRunning) {
		t.Fatalf("delete running: %v", err)
	}
	if err := c.Stop(true, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	if fileExists(spec.dir()) {
		t.Fatal("config dir survived delete")
	}
}

func TestStartFailure(t *testing.T) {
	spec := testSpec(t)
	spec.Rootfs = hostDir(t, 0o755) // empty: no /sbin/init
	// Owned by the container's root, as the overlay moatd mounts shows it.
	if err := os.Chown(spec.Rootfs, int(spec.IDMap[0].Hostid), int(spec.IDMap[0].Hostid)); err != nil {
		t.Fatal(err)
	}
	c, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete() })
	err = c.Start()
	if !errors.Is(err, ErrStart) || !strings.Contains(err.Error(), "init") {
		t.Fatalf("start without init: %v", err)
	}
	t.Log(err)
	if left := leftovers(c.cg, spec.Name); len(left) > 0 {
		t.Fatalf("cgroups left after failed start: %v", left)
	}
}
