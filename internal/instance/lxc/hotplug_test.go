package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadonlyDiskRemount: container root owns its mount namespace and
// may remount; a read-only disk must stay read-only all the same, even
// when the source is writable by container root (mode 0777).
func TestReadonlyDiskRemount(t *testing.T) {
	src := hostDir(t, 0o777)
	spec := testSpec(t)
	path := "/tmp/" + spec.Name + "-ro"
	spec.Mounts = []Mount{{Source: src, Path: path, ReadOnly: true}}
	c := startTest(t, spec)
	assertLockedReadonly(t, c, src, path)
}

// assertLockedReadonly tries the remount attack on path and checks that
// nothing reaches the host source dir.
func assertLockedReadonly(t *testing.T, c *Container, src, path string) {
	t.Helper()
	for i, remount := range [][]string{nil, {"mount", "-o", "remount,bind,rw", path}, {"mount", "-o", "remount,rw", path}} {
		if remount != nil {
			code, out, errOut := run(t, c, remount...)
			t.Logf("%v: exit %d %s%s", remount, code, out, errOut)
		}
		file := fmt.Sprintf("%s/attack%d", path, i)
		code, _, errOut := run(t, c, "touch", file)
		if code == 0 || !strings.Contains(errOut, "Read-only file system") {
			t.Errorf("write after %v: exit %d %q", remount, code, errOut)
		}
		if fileExists(filepath.Join(src, filepath.Base(file))) {
			t.Errorf("%s written to the host through the read-only mount", file)
		}
	}
}

// hotplug applies mutate to a copy of cur's spec and hot-plugs the
// difference, returning the new handle (or the error).
func hotplug(t *testing.T, cur *Container, mutate func(*Spec)) (*Container, error) {
	t.Helper()
	spec := cur.spec
	spec.Mounts = slices.Clone(spec.Mounts)
	spec.Devices = slices.Clone(spec.Devices)
	mutate(&spec)
	next, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	return next, next.UpdateDevices(cur)
}

// mountLine is path's line of the container's mountinfo without the ids
// that differ from one mount to the next.
func mountLine(t *testing.T, c *Container, path string) string {
	t.Helper()
	_, out, _ := run(t, c, "cat", "/proc/self/mountinfo")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 6 && f[4] == path {
			return strings.Join(append([]string{f[3], f[4], f[5]}, f[slices.Index(f, "-"):]...), " ")
		}
	}
	return ""
}

func TestHotplugDisk(t *testing.T) {
	rw, ro := hostDir(t, 0o777), hostDir(t, 0o777)
	if err := os.WriteFile(filepath.Join(ro, "data"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startTest(t, testSpec(t))
	// Below /tmp: the shared test image is not shifted for the container
	// (moatd's overlay rootfs is), and only its /tmp is world-writable.
	rwPath, roPath := "/tmp/"+c.spec.Name+"-rw", "/tmp/"+c.spec.Name+" ro"
	added, err := hotplug(t, c, func(s *Spec) {
		s.Mounts = append(s.Mounts, Mount{Source: rw, Path: rwPath}, Mount{Source: ro, Path: roPath, ReadOnly: true})
	})
	if err != nil {
		t.Fatal(err)
	}

	// Read-write: writes are visible on both sides.
	if code, _, errOut := run(t, c, "sh", "-c", "echo in > '"+rwPath+"/from-ct'"); code != 0 {
		t.Fatalf("write to hot-plugged disk: %s", errOut)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "from-ct")); err != nil || string(b) != "in\n" {
		t.Fatalf("host sees %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(rw, "from-host"), []byte("out\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, out, _ := run(t, c, "cat", rwPath+"/from-host"); out != "out\n" {
		t.Fatalf("container sees %q", out)
	}
	// Read-only: readable, and stays read-only against container root.
	if _, out, _ := run(t, c, "cat", roPath+"/data"); out != "hello\n" {
		t.Fatalf("read-only disk: %q", out)
	}
	assertLockedReadonly(t, c, ro, roPath)

	// A restart gives the same mounts, with the same options.
	hotLine := mountLine(t, c, strings.ReplaceAll(roPath, " ", `\040`))
	if hotLine == "" || !strings.Contains(hotLine, " ro,") {
		t.Fatalf("hot-plugged read-only mount: %q", hotLine)
	}
	if err := c.Stop(true, 0); err != nil {
		t.Fatal(err)
	}
	if err := added.Start(); err != nil {
		t.Fatal(err)
	}
	if got := mountLine(t, added, strings.ReplaceAll(roPath, " ", `\040`)); got != hotLine {
		t.Fatalf("after restart:\n%s\nhot-plugged:\n%s", got, hotLine)
	}
	assertLockedReadonly(t, added, ro, roPath)

	// Removal detaches inside, leaves the mount point and the source.
	if _, err := hotplug(t, added, func(s *Spec) { s.Mounts = nil }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{rwPath + "/from-host", roPath + "/data"} {
		if code, _, _ := run(t, c, "test", "-e", p); code == 0 {
			t.Errorf("%s still visible after removal", p)
		}
	}
	if code, _, _ := run(t, c, "test", "-d", rwPath); code != 0 {
		t.Error("mount point removed")
	}
	if b, err := os.ReadFile(filepath.Join(ro, "data")); err != nil || string(b) != "hello\n" {
		t.Fatalf("host source after removal: %q %v", b, err)
	}
	if !fileExists(filepath.Join(rw, "from-ct")) {
		t.Fatal("host source lost a file")
	}
}

// TestHotplugSymlinkPath: the container controls its tree. A symlink on
// the way to a disk's path is followed only if container root owns it,
// and always within the container's root; one a container user made is
// refused, and the change is not half-applied.
func TestHotplugSymlinkPath(t *testing.T) {
	src := hostDir(t, 0o755)
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startTest(t, testSpec(t))
	userLink, rootLink, good := "/tmp/"+c.spec.Name+"-user", "/tmp/"+c.spec.Name+"-root", "/tmp/"+c.spec.Name+"-good"
	t.Cleanup(func() { run(t, c, "rm", "-f", userLink, rootLink) })
	if code, _, errOut := run(t, c, "sh", "-c", "ln -s /etc "+userLink+" && chown -h 1000:1000 "+userLink+" && ln -s /etc "+rootLink); code != 0 {
		t.Fatal(errOut)
	}

	_, err := hotplug(t, c, func(s *Spec) {
		s.Mounts = append(s.Mounts, Mount{Source: src, Path: good}, Mount{Source: src, Path: userLink + "/x"})
	})
	if !errors.Is(err, ErrHotplug) || !strings.Contains(err.Error(), "not permitted") {
		t.Fatalf("mount through a user's symlink: %v", err)
	}
	if code, _, _ := run(t, c, "test", "-e", "/etc/x/marker"); code == 0 {
		t.Fatal("mounted through a container user's symlink")
	}
	if code, _, _ := run(t, c, "test", "-e", good+"/marker"); code == 0 {
		t.Fatal("first mount of a failed change left in place")
	}

	// Root's symlink leads to the container's /etc, never the host's.
	withRoot, err := hotplug(t, c, func(s *Spec) { s.Mounts = append(s.Mounts, Mount{Source: src, Path: rootLink}) })
	if err != nil {
		t.Fatal(err)
	}
	if _, out, _ := run(t, c, "cat", "/etc/marker"); out != "disk\n" {
		t.Fatalf("container /etc: %q", out)
	}
	if fileExists("/etc/marker") {
		t.Fatal("host /etc reached")
	}
	if _, err := hotplug(t, withRoot, func(s *Spec) { s.Mounts = nil }); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := run(t, c, "test", "-e", "/etc/marker"); code == 0 {
		t.Fatal("mount over the container's /etc not removed")
	}
}

func TestHotplugUnixDevices(t *testing.T) {
	c := startTest(t, testSpec(t))
	// Major 511 is unassigned: opening a node for it fails with ENXIO
	// when the device cgroup allows it and EPERM when it does not.
	spares := []Device{
		{Type: CharDevice, Path: "/dev/spare", Major: 511, Minor: 7, Mode: 0o666},
		{Type: BlockDevice, Path: "/dev/spareblk", Major: 511, Minor: 8, Mode: 0o666},
	}
	null := Device{Type: CharDevice, Path: "/dev/mynull", Major: 1, Minor: 3, Mode: 0o666}
	added, err := hotplug(t, c, func(s *Spec) { s.Devices = append([]Device{null}, spares...) })
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(t, c, "sh", "-c", "echo x > /dev/mynull && stat -c '%t:%T %a' /dev/mynull"); code != 0 || out != "1:3 666\n" {
		t.Fatalf("hot-plugged /dev/mynull: %q %s", out, errOut)
	}
	list, _ := os.ReadFile(filepath.Join(c.live.dir(c.cg, "devices"), "devices.list"))
	for _, d := range spares {
		if _, _, errOut := run(t, c, "sh", "-c", ": < "+d.Path); !strings.Contains(errOut, "No such device or address") {
			t.Fatalf("open allowed %s: %q", d.Path, errOut)
		}
		if rule := fmt.Sprintf("%c 511:%d rwm", d.Type, d.Minor); !strings.Contains(string(list), rule) {
			t.Fatalf("devices.list lacks %q:\n%s", rule, list)
		}
		// Container root keeps a second way to the node: after removal
		// the cgroup, not only the missing node, must refuse it.
		keep := "/tmp/" + c.spec.Name + "-keep" + filepath.Base(d.Path)
		if code, _, errOut := run(t, c, "sh", "-c", "touch "+keep+" && mount --bind "+d.Path+" "+keep); code != 0 {
			t.Fatal(errOut)
		}
		t.Cleanup(func() { run(t, c, "sh", "-c", "umount "+keep+"; rm "+keep) })
	}

	if _, err := hotplug(t, added, func(s *Spec) { s.Devices = nil }); err != nil {
		t.Fatal(err)
	}
	for _, d := range spares {
		if code, _, _ := run(t, c, "sh", "-c", "test -c "+d.Path+" || test -b "+d.Path); code == 0 {
			t.Fatalf("%s still a device node after removal", d.Path)
		}
		keep := "/tmp/" + c.spec.Name + "-keep" + filepath.Base(d.Path)
		if _, _, errOut := run(t, c, "sh", "-c", ": < "+keep); !strings.Contains(errOut, "Operation not permitted") {
			t.Fatalf("removed %s still allowed: %q", d.Path, errOut)
		}
	}
	// 1:3 is also on the default list: removing /dev/mynull keeps /dev/null.
	if code, _, errOut := run(t, c, "sh", "-c", "echo x > /dev/null"); code != 0 {
		t.Fatalf("/dev/null after removing /dev/mynull: %s", errOut)
	}
}

// TestHotplugPrivileged: a privileged container has no user namespace to
// enter; its disks are hot-plugged all the same. Its root is host root, so
// read-only is no barrier against it (docs/security.md) and the remount
// attack is not tried.
func TestHotplugPrivileged(t *testing.T) {
	src := hostDir(t, 0o755)
	if err := os.WriteFile(filepath.Join(src, "data"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t)
	spec.Privileged, spec.IDMap = true, nil
	c := startTest(t, spec)
	path := "/mnt/" + spec.Name
	added, err := hotplug(t, c, func(s *Spec) { s.Mounts = []Mount{{Source: src, Path: path, ReadOnly: true}} })
	if err != nil {
		t.Fatal(err)
	}
	if _, out, _ := run(t, c, "cat", path+"/data"); out != "hello\n" {
		t.Fatalf("hot-plugged disk: %q", out)
	}
	if code, _, errOut := run(t, c, "touch", path+"/new"); code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Fatalf("write to read-only disk: exit %d %q", code, errOut)
	}
	if _, err := hotplug(t, added, func(s *Spec) { s.Mounts = nil }); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := run(t, c, "test", "-e", path+"/data"); code == 0 {
		t.Fatal("disk still mounted after removal")
	}
	run(t, c, "rmdir", path)
}

// BenchmarkHotplugDisk measures adding and removing a read-only disk on a
// running container (two helper runs, the add with its locking copy).
func BenchmarkHotplugDisk(b *testing.B) {
	requireHost(b)
	dir, err := os.MkdirTemp(testRoot, "disk-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	spec := testSpec(b)
	cur, err := New(spec)
	if err != nil {
		b.Fatal(err)
	}
	if err := cur.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cur.Stop(true, 0); cur.Delete() }()
	with := spec
	with.Mounts = []Mount{{Source: dir, Path: "/tmp/" + spec.Name + "-bench", ReadOnly: true}}
	added, _ := New(with)
	removed, _ := New(spec)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := added.UpdateDevices(removed); err != nil {
			b.Fatal(err)
		}
		if err := removed.UpdateDevices(added); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHotplugNested: a disk below another one added in the same change is
// mounted after it (else the outer mount would hide it) and comes off
// first, whatever order the spec lists them in.
func TestHotplugNested(t *testing.T) {
	outer, inner := hostDir(t, 0o777), hostDir(t, 0o755)
	if err := os.WriteFile(filepath.Join(inner, "data"), []byte("inner\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startTest(t, testSpec(t))
	top := "/tmp/" + c.spec.Name + "-outer"
	added, err := hotplug(t, c, func(s *Spec) {
		s.Mounts = []Mount{{Source: inner, Path: top + "/in", ReadOnly: true}, {Source: outer, Path: top}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, out, errOut := run(t, c, "cat", top+"/in/data"); out != "inner\n" {
		t.Fatalf("nested disk: %q %s", out, errOut)
	}
	if _, err := hotplug(t, added, func(s *Spec) { s.Mounts = nil }); err != nil {
		t.Fatal(err)
	}
	_, out, _ := run(t, c, "cat", "/proc/self/mountinfo")
	if strings.Contains(out, top) {
		t.Fatalf("mounts left after removal:\n%s", out)
	}
}

// TestStartDiskThroughUserSymlink: at start the same rule holds as for a
// hot-plug, and the failed start says why.
func TestStartDiskThroughUserSymlink(t *testing.T) {
	spec := testSpec(t)
	link := "/tmp/" + spec.Name + "-user"
	hostLink := filepath.Join(spec.Rootfs, link)
	if err := os.Symlink("/etc", hostLink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(hostLink) })
	uid, _ := spec.IDMap.HostID(true, 1000)
	gid, _ := spec.IDMap.HostID(false, 1000)
	if err := os.Lchown(hostLink, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	spec.Mounts = []Mount{{Source: hostDir(t, 0o755), Path: link + "/x"}}
	c, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete() })
	err = c.Start()
	if !errors.Is(err, ErrStart) || !strings.Contains(err.Error(), link+"/x: the path crosses a symlink that container root does not own") {
		t.Fatalf("start with a disk through a user's symlink: %v", err)
	}
	if fileExists("/etc/x") {
		t.Fatal("host /etc reached")
	}
}

// TestHotplugFile: a disk whose source is a file is mounted on a file,
// and a read-only one stays read-only after a remount attempt.
func TestHotplugFile(t *testing.T) {
	dir := hostDir(t, 0o777)
	src := filepath.Join(dir, "conf")
	if err := os.WriteFile(src, []byte("v1\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	c := startTest(t, testSpec(t))
	path := "/tmp/" + c.spec.Name + "-conf"
	if _, err := hotplug(t, c, func(s *Spec) { s.Mounts = []Mount{{Source: src, Path: path, ReadOnly: true}} }); err != nil {
		t.Fatal(err)
	}
	if _, out, _ := run(t, c, "cat", path); out != "v1\n" {
		t.Fatalf("file disk reads %q", out)
	}
	run(t, c, "mount", "-o", "remount,bind,rw", path)
	if code, _, errOut := run(t, c, "sh", "-c", "echo v2 > "+path); code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Fatalf("write to read-only file disk: exit %d %q", code, errOut)
	}
	if b, _ := os.ReadFile(src); string(b) != "v1\n" {
		t.Fatalf("host file changed: %q", b)
	}
}
