package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// runIn runs lxc with stdin and fails the test if it fails.
func (l *lxcClient) runIn(stdin string, args ...string) string {
	l.t.Helper()
	c := l.cmd(args...)
	c.Stdin = strings.NewReader(stdin)
	out, err := c.CombinedOutput()
	if err != nil {
		l.t.Fatalf("lxc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// refused runs lxc, fails the test unless it fails, and returns its output.
func (l *lxcClient) refused(args ...string) string {
	l.t.Helper()
	out, err := l.cmd(args...).CombinedOutput()
	if err == nil {
		l.t.Fatalf("lxc %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// mustContain fails the test unless out holds every want.
func mustContain(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

// pipe runs a shell pipeline with lxc pointed at the daemon under test.
func (l *lxcClient) pipe(script string) string {
	l.t.Helper()
	c := exec.Command("sh", "-ec", script)
	c.Env = l.cmd().Env
	out, err := c.CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// TestLXCClientImages: lxc image list (table and csv), info, the alias
// commands, edit from stdin, delete, and a public import seen by a client
// the daemon does not trust.
func TestLXCClientImages(t *testing.T) {
	path, fp := testdaemon.BusyboxImage(t)
	d := testdaemon.Start(t)
	lxc := newLXC(t, d)
	lxc.run("image", "import", path, "--alias", "bb")

	mustContain(t, "lxc image list", lxc.run("image", "list"),
		"| ALIAS | FINGERPRINT  | PUBLIC |", "| bb    | "+fp[:12]+" | no     | BusyBox test image | x86_64       | CONTAINER |")
	if out := lxc.run("image", "list", "--format=csv"); !strings.HasPrefix(out, "bb,"+fp[:12]+",no,BusyBox test image,x86_64,CONTAINER,") || strings.Count(out, "\n") != 1 {
		t.Errorf("lxc image list --format=csv:\n%s", out)
	}
	mustContain(t, "lxc image info bb", lxc.run("image", "info", "bb"),
		"Fingerprint: "+fp, "Public: no", "os: busybox", "Aliases:\n    - bb\n", "Profiles:\n    - default")

	lxc.run("image", "alias", "create", "bb2", fp)
	mustContain(t, "lxc image alias list", lxc.run("image", "alias", "list"), "| bb2   | "+fp[:12]+" | CONTAINER |")
	lxc.run("image", "alias", "rename", "bb2", "bb3")
	if out := lxc.run("image", "alias", "list", "--format=csv"); out != "bb,"+fp[:12]+",CONTAINER,\nbb3,"+fp[:12]+",CONTAINER,\n" {
		t.Errorf("after lxc image alias rename:\n%s", out)
	}
	if r := d.Do("GET", "/1.0/images/aliases/bb2", nil); r.Status != 404 {
		t.Errorf("renamed alias bb2 still resolves: %d", r.Status)
	}
	lxc.run("image", "alias", "delete", "bb3")
	if r := d.Do("GET", "/1.0/images/aliases/bb3", nil); r.Status != 404 {
		t.Errorf("deleted alias bb3 still resolves: %d", r.Status)
	}

	// lxc image edit reads the edited YAML from stdin.
	lxc.pipe(`lxc image show bb | sed -e 's/public: false/public: true/' -e 's/description: BusyBox test image/description: edited by lxc/' | lxc image edit bb`)
	var img api.Image
	d.Do("GET", "/1.0/images/"+fp, nil).Metadata(t, &img)
	if !img.Public || img.Properties["description"] != "edited by lxc" || img.Properties["os"] != "busybox" {
		t.Errorf("after lxc image edit: public=%v properties=%v", img.Public, img.Properties)
	}
	mustContain(t, "lxc image list after the edit", lxc.run("image", "list", "--format=csv"), "bb,"+fp[:12]+",yes,edited by lxc,")

	lxc.run("image", "delete", "bb")
	if out := lxc.run("image", "list", "--format=csv"); out != "" {
		t.Errorf("after lxc image delete:\n%s", out)
	}
	if r := d.Do("GET", "/1.0/images/"+fp, nil); r.Status != 404 {
		t.Errorf("deleted image: %d", r.Status)
	}

	// A public and a private image; a client the daemon does not trust
	// (a --public remote) sees only the public one.
	lxc.run("image", "import", path, "--alias", "pub", "--public")
	meta, rootfs := splitImage(t, path, "private")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "meta.tar.gz"), meta, 0o644)
	os.WriteFile(filepath.Join(dir, "rootfs.tar.gz"), rootfs, 0o644)
	lxc.run("image", "import", filepath.Join(dir, "meta.tar.gz"), filepath.Join(dir, "rootfs.tar.gz"), "--alias", "priv")
	mustContain(t, "lxc image info pub", lxc.run("image", "info", "pub"), "Public: yes")
	_, addr := listenHTTPS(t, d)
	anon := newLXC(t, d)
	anon.run("remote", "add", "r", "https://"+addr, "--accept-certificate", "--public")
	out := anon.run("image", "list", "r:", "--format=csv")
	if !strings.HasPrefix(out, "pub,"+fp[:12]+",yes,") || strings.Contains(out, "priv") {
		t.Errorf("untrusted lxc image list:\n%s", out)
	}
	mustContain(t, "untrusted lxc image info r:pub", anon.run("image", "info", "r:pub"), "Fingerprint: "+fp, "Public: yes")
	if out := anon.refused("image", "info", "r:priv"); !strings.Contains(out, "Image not found") {
		t.Errorf("untrusted lxc image info of a private image:\n%s", out)
	}
}

// TestLXCClientProfiles: lxc profile show, edit from stdin, unset, the
// device subcommands, copy, rename, delete, and assign/remove on a
// running container (the profile's disk is attached and detached live).
func TestLXCClientProfiles(t *testing.T) {
	lxc := lxcLaunched(t)
	d := lxc.d
	mustContain(t, "lxc profile show default", lxc.run("profile", "show", "default"),
		"name: default", "  root:\n    path: /\n    pool: default\n    type: disk", "used_by:\n- /1.0/instances/c1")

	lxc.run("profile", "create", "p1")
	lxc.runIn("description: edited\nconfig:\n  limits.memory: 96MiB\n  user.x: y\ndevices: {}\n", "profile", "edit", "p1")
	var p api.Profile
	d.Do("GET", "/1.0/profiles/p1", nil).Metadata(t, &p)
	if p.Description != "edited" || p.Config["limits.memory"] != "96MiB" || p.Config["user.x"] != "y" {
		t.Errorf("after lxc profile edit: %+v", p)
	}
	// A bad value in the edited YAML is refused by name and changes nothing.
	c := lxc.cmd("profile", "edit", "p1")
	c.Stdin = strings.NewReader("config:\n  limits.memory: lots\n")
	if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "limits.memory") {
		t.Errorf("lxc profile edit with a bad limits.memory: %v %s", err, out)
	}
	lxc.run("profile", "unset", "p1", "user.x")
	p = api.Profile{}
	d.Do("GET", "/1.0/profiles/p1", nil).Metadata(t, &p)
	if _, ok := p.Config["user.x"]; ok || p.Config["limits.memory"] != "96MiB" {
		t.Errorf("after lxc profile unset p1 user.x: %v", p.Config)
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello"), []byte("from the host\n"), 0o644)
	if out := lxc.run("profile", "device", "add", "p1", "share", "disk", "source="+dir, "path=/mnt/share"); !strings.Contains(out, "Device share added to p1") {
		t.Errorf("lxc profile device add: %s", out)
	}
	if out := lxc.run("profile", "device", "show", "p1"); out != "share:\n  path: /mnt/share\n  source: "+dir+"\n  type: disk\n" {
		t.Errorf("lxc profile device show:\n%s", out)
	}
	if out := lxc.run("profile", "device", "list", "p1"); out != "share\n" {
		t.Errorf("lxc profile device list: %q", out)
	}

	lxc.run("profile", "copy", "p1", "p2")
	lxc.run("profile", "rename", "p2", "p3")
	var p3 api.Profile
	d.Do("GET", "/1.0/profiles/p3", nil).Metadata(t, &p3)
	if p3.Config["limits.memory"] != "96MiB" || p3.Devices["share"]["source"] != dir {
		t.Errorf("the copied, renamed profile: %+v", p3)
	}
	if r := d.Do("GET", "/1.0/profiles/p2", nil); r.Status != 404 {
		t.Errorf("p2 after its rename: %d", r.Status)
	}

	// assign replaces the list; the profile's disk shows up live.
	if out := lxc.run("profile", "assign", "c1", "default,p1"); !strings.Contains(out, "Profiles default,p1 applied to c1") {
		t.Errorf("lxc profile assign: %s", out)
	}
	mustContain(t, "lxc config show c1 --expanded", lxc.run("config", "show", "c1", "--expanded"),
		"limits.memory: 96MiB", "  share:\n    path: /mnt/share", "profiles:\n- default\n- p1\n")
	if out := lxc.run("exec", "c1", "--", "cat", "/mnt/share/hello"); out != "from the host\n" {
		t.Errorf("the profile's disk in c1: %q", out)
	}
	mustContain(t, "lxc profile show p1", lxc.run("profile", "show", "p1"), "used_by:\n- /1.0/instances/c1")
	mustContain(t, "lxc profile delete of a profile in use", lxc.refused("profile", "delete", "p1"), "in use by /1.0/instances/c1")

	lxc.run("profile", "remove", "c1", "p1")
	var inst api.Instance
	d.Do("GET", "/1.0/instances/c1", nil).Metadata(t, &inst)
	if strings.Join(inst.Profiles, ",") != "default" || inst.ExpandedDevices["share"] != nil {
		t.Errorf("after lxc profile remove c1 p1: profiles %v, devices %v", inst.Profiles, inst.ExpandedDevices)
	}
	if out := lxc.run("exec", "c1", "--", "cat", "/proc/self/mounts"); strings.Contains(out, "/mnt/share") {
		t.Errorf("the removed profile's disk is still mounted in c1:\n%s", out)
	}

	lxc.run("profile", "device", "remove", "p1", "share")
	if out := lxc.run("profile", "device", "list", "p1"); strings.TrimSpace(out) != "" {
		t.Errorf("after lxc profile device remove: %q", out)
	}
	lxc.run("profile", "delete", "p3")
	lxc.run("profile", "delete", "p1")
	if out := lxc.run("profile", "list", "--format=csv"); out != "default,Default Moat profile,1\n" {
		t.Errorf("lxc profile list after the deletes:\n%s", out)
	}
}

// TestLXCClientInstanceConfig: lxc config show (local and expanded), edit
// from stdin, unset, and the device subcommands on a running container: a
// read-only disk (a write inside fails), set/get/show/list/remove, the root
// disk override with a size (refused by name), a unix-char device.
func TestLXCClientInstanceConfig(t *testing.T) {
	lxc := lxcLaunched(t)
	d := lxc.d
	lxc.run("profile", "create", "p1")
	lxc.run("profile", "set", "p1", "user.from_profile", "yes")
	lxc.run("profile", "add", "c1", "p1")
	local := lxc.run("config", "show", "c1")
	mustContain(t, "lxc config show c1", local, "image.os: busybox", "volatile.uuid:", "devices: {}", "profiles:\n- default\n- p1\n")
	if strings.Contains(local, "user.from_profile") || strings.Contains(local, "pool: default") {
		t.Errorf("lxc config show c1 shows the profiles' keys:\n%s", local)
	}
	mustContain(t, "lxc config show c1 --expanded", lxc.run("config", "show", "c1", "--expanded"),
		"user.from_profile: \"yes\"", "security.idmap.isolated: \"true\"", "  root:\n    path: /\n    pool: default\n    type: disk")

	edited := strings.Replace(local, "config:\n", "config:\n  user.note: edited\n  limits.processes: \"200\"\n", 1)
	edited = strings.Replace(edited, `description: ""`, "description: from lxc edit", 1)
	lxc.runIn(edited, "config", "edit", "c1")
	var inst api.Instance
	d.Do("GET", "/1.0/instances/c1", nil).Metadata(t, &inst)
	if inst.Config["user.note"] != "edited" || inst.Config["limits.processes"] != "200" || inst.Description != "from lxc edit" {
		t.Errorf("after lxc config edit: %q %v", inst.Description, inst.Config)
	}
	if out := lxc.run("exec", "c1", "--", "sh", "-c", "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"); strings.TrimSpace(out) != "200" {
		t.Errorf("limits.processes from lxc config edit, inside: %q", out)
	}
	lxc.run("config", "unset", "c1", "user.note")
	if out := lxc.run("config", "get", "c1", "user.note"); strings.TrimSpace(out) != "" {
		t.Errorf("after lxc config unset: %q", out)
	}

	// A read-only disk: readable, a write inside fails; set makes it
	// writable and moves it, live.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("ro\n"), 0o644)
	os.Chmod(dir, 0o777)
	if out := lxc.run("config", "device", "add", "c1", "d1", "disk", "source="+dir, "path=/mnt/d", "readonly=true"); !strings.Contains(out, "Device d1 added to c1") {
		t.Errorf("lxc config device add: %s", out)
	}
	if out := lxc.run("exec", "c1", "--", "cat", "/mnt/d/f"); out != "ro\n" {
		t.Errorf("the read-only disk's file: %q", out)
	}
	out, err := lxc.cmd("exec", "c1", "--", "touch", "/mnt/d/x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Read-only file system") {
		t.Errorf("a write to the read-only disk: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("the write to the read-only disk reached the host")
	}
	lxc.run("config", "device", "set", "c1", "d1", "readonly=false", "path=/mnt/e")
	if out := lxc.run("config", "device", "get", "c1", "d1", "readonly"); out != "false\n" {
		t.Errorf("lxc config device get readonly: %q", out)
	}
	if out := lxc.run("config", "device", "show", "c1"); out != "d1:\n  path: /mnt/e\n  readonly: \"false\"\n  source: "+dir+"\n  type: disk\n" {
		t.Errorf("lxc config device show:\n%s", out)
	}
	lxc.run("exec", "c1", "--", "touch", "/mnt/e/x")
	if _, err := os.Stat(filepath.Join(dir, "x")); err != nil {
		t.Errorf("a write to the disk made writable: %v", err)
	}
	if out := lxc.run("exec", "c1", "--", "cat", "/proc/self/mounts"); strings.Contains(out, " /mnt/d ") {
		t.Errorf("the disk's old path is still mounted:\n%s", out)
	}

	// Moat's root disk has no size: the override is refused saying why,
	// and changes nothing.
	mustContain(t, "lxc config device override c1 root size=1GiB", lxc.refused("config", "device", "override", "c1", "root", "size=1GiB"),
		`Invalid device "root": key "size" is not supported: Moat sets no disk quotas`)
	inst = api.Instance{}
	d.Do("GET", "/1.0/instances/c1", nil).Metadata(t, &inst)
	if _, ok := inst.Devices["root"]; ok {
		t.Errorf("the refused override left a local root disk: %v", inst.Devices)
	}

	// A unix-char device made from a host node: the same device inside.
	lxc.run("config", "device", "add", "c1", "null2", "unix-char", "source=/dev/null", "path=/dev/null2")
	if out := lxc.run("exec", "c1", "--", "ls", "-l", "/dev/null2"); !strings.HasPrefix(out, "crw-rw----") || !strings.Contains(out, " 1,   3 ") {
		t.Errorf("the unix-char device inside: %s", out)
	}
	if out := lxc.run("exec", "c1", "--", "sh", "-c", "echo hi > /dev/null2 && echo ok"); out != "ok\n" {
		t.Errorf("a write to the unix-char device: %q", out)
	}
	if out := strings.Fields(lxc.run("config", "device", "list", "c1")); !slices.Equal(sorted(out), []string{"d1", "null2"}) {
		t.Errorf("lxc config device list: %q", out)
	}
	lxc.run("config", "device", "remove", "c1", "d1", "null2")
	if out := lxc.run("config", "device", "list", "c1"); strings.TrimSpace(out) != "" {
		t.Errorf("after lxc config device remove: %q", out)
	}
	if out := lxc.run("exec", "c1", "--", "sh", "-c", "grep -c /mnt/e /proc/self/mounts; test -c /dev/null2 && echo present; true"); strings.TrimSpace(out) != "0" {
		t.Errorf("the removed devices inside: %q", out)
	}
}

// TestLXCClientFilesExec: lxc file pull to stdout and -r, push -r of a
// tree with a symlink, push with owner and mode, delete; lxc exec with
// --env, --user/--group/--cwd, the exit code of false and the umask.
func TestLXCClientFilesExec(t *testing.T) {
	lxc := lxcLaunched(t)
	d := lxc.d
	if out, want := lxc.run("file", "pull", "c1/etc/hostname", "-"), lxc.run("exec", "c1", "--", "cat", "/etc/hostname"); out != want || out == "" {
		t.Errorf("lxc file pull c1/etc/hostname -: %q, inside %q", out, want)
	}

	lxc.run("exec", "c1", "--", "sh", "-c", "mkdir -p /srv/t/sub && echo a > /srv/t/a && echo b > /srv/t/sub/b && ln -s a /srv/t/l && chown 1000:1000 /srv/t/sub/b && chmod 0640 /srv/t/sub/b")
	dst := t.TempDir()
	lxc.run("file", "pull", "-r", "c1/srv/t", dst)
	if b, err := os.ReadFile(filepath.Join(dst, "t", "sub", "b")); err != nil || string(b) != "b\n" {
		t.Errorf("pulled t/sub/b: %q %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "t", "sub", "b")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("pulled t/sub/b's mode: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "t", "a")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("pulled t/a's mode (made by lxc exec under umask 022): %v %v", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "t", "l")); err != nil || target != "a" {
		t.Errorf("pulled symlink t/l: %q %v", target, err)
	}

	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "tree", "d"), 0o755)
	os.WriteFile(filepath.Join(src, "tree", "x"), []byte("x\n"), 0o644)
	os.WriteFile(filepath.Join(src, "tree", "d", "y"), []byte("y\n"), 0o600)
	os.Symlink("x", filepath.Join(src, "tree", "lnk"))
	lxc.run("file", "push", "-r", filepath.Join(src, "tree"), "c1/root/")
	if out := lxc.run("exec", "c1", "--", "sh", "-c", "cat /root/tree/x /root/tree/d/y; readlink /root/tree/lnk; stat -c '%n %a %u:%g' /root/tree /root/tree/d /root/tree/d/y"); out != "x\ny\nx\n/root/tree 755 0:0\n/root/tree/d 755 0:0\n/root/tree/d/y 600 0:0\n" {
		t.Errorf("the tree pushed with lxc file push -r:\n%s", out)
	}

	f := filepath.Join(src, "secret")
	os.WriteFile(f, []byte("s\n"), 0o644)
	lxc.run("file", "push", "--uid", "1000", "--gid", "1000", "--mode", "0600", f, "c1/tmp/secret")
	if out := lxc.run("exec", "c1", "--", "stat", "-c", "%a %u:%g %s", "/tmp/secret"); out != "600 1000:1000 2\n" {
		t.Errorf("lxc file push --uid 1000 --gid 1000 --mode 0600: %q", out)
	}
	res, err := d.HTTPClient().Get("http://moat/1.0/instances/c1/files?path=/tmp/secret")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-LXD-uid") != "1000" || res.Header.Get("X-LXD-gid") != "1000" || res.Header.Get("X-LXD-mode") != "0600" {
		t.Errorf("GET of the pushed file: %d %v", res.StatusCode, res.Header)
	}
	lxc.run("file", "delete", "c1/tmp/secret")
	if r := d.Do("GET", "/1.0/instances/c1/files?path=/tmp/secret", nil); r.Status != 404 {
		t.Errorf("GET after lxc file delete: %d", r.Status)
	}
	if out := lxc.refused("file", "delete", "c1/tmp/secret"); !strings.Contains(out, `"/tmp/secret" not found`) {
		t.Errorf("lxc file delete of a missing file: %s", out)
	}

	if out := lxc.run("exec", "c1", "--env", "FOO=bar", "--", "sh", "-c", "echo $FOO"); out != "bar\n" {
		t.Errorf("lxc exec --env FOO=bar: %q", out)
	}
	if out := lxc.run("exec", "c1", "--user", "1000", "--group", "1000", "--cwd", "/tmp", "--", "sh", "-c", "id -u; id -g; pwd"); out != "1000\n1000\n/tmp\n" {
		t.Errorf("lxc exec --user 1000 --group 1000 --cwd /tmp: %q", out)
	}
	c := lxc.cmd("exec", "c1", "--", "false")
	if err := c.Run(); err == nil || c.ProcessState.ExitCode() != 1 {
		t.Errorf("lxc exec c1 -- false: %v", err)
	}
	// As under LXD, what a command creates is not private by default.
	if out := lxc.run("exec", "c1", "--", "sh", "-c", "umask; mkdir /srv/u; stat -c %a /srv/u"); out != "0022\n755\n" {
		t.Errorf("lxc exec's umask: %q", out)
	}
}

// TestLXCClientInitOptions: lxc init with -p and -c, an ephemeral launch
// that lxc stop deletes, and the launches Moat refuses (privileged with
// nesting, more CPUs than the host has), which leave nothing behind.
func TestLXCClientInitOptions(t *testing.T) {
	lxc := lxcLaunched(t)
	d := lxc.d
	for _, n := range []string{"c2", "c3", "c4", "c5"} {
		t.Cleanup(func() { lxc.cmd("delete", "-f", n).Run() })
	}
	lxc.run("init", "bb", "c2", "-p", "default", "-c", "limits.memory=64MiB")
	var c2 api.Instance
	d.Do("GET", "/1.0/instances/c2", nil).Metadata(t, &c2)
	if c2.Status != "Stopped" || c2.Config["limits.memory"] != "64MiB" || strings.Join(c2.Profiles, ",") != "default" {
		t.Errorf("after lxc init -p default -c limits.memory=64MiB: %s %v %v", c2.Status, c2.Profiles, c2.Config)
	}
	lxc.run("start", "c2")
	if out := lxc.run("exec", "c2", "--", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"); strings.TrimSpace(out) != "67108864" {
		t.Errorf("c2's memory limit inside: %q", out)
	}

	lxc.run("launch", "bb", "c3", "--ephemeral")
	mustContain(t, "lxc config show c3", lxc.run("config", "show", "c3"), "ephemeral: true")
	lxc.run("stop", "c3")
	if r := d.Do("GET", "/1.0/instances/c3", nil); r.Status != 404 {
		t.Errorf("the ephemeral c3 after lxc stop: %d", r.Status)
	}
	if out := lxc.run("list", "--format=csv", "-c", "ns"); out != "c1,RUNNING\nc2,RUNNING\n" {
		t.Errorf("lxc list after stopping the ephemeral c3:\n%s", out)
	}

	mustContain(t, "lxc launch -c security.privileged=true -c security.nesting=true",
		lxc.refused("launch", "bb", "c4", "-c", "security.privileged=true", "-c", "security.nesting=true"),
		"security.privileged=true together with security.nesting=true", "security.privileged.allow_nesting=true")
	mustContain(t, "lxc launch -c limits.cpu=99", lxc.refused("launch", "bb", "c5", "-c", "limits.cpu=99"),
		`"limits.cpu"`, "the host's online CPUs")
	for _, n := range []string{"c4", "c5"} {
		if r := d.Do("GET", "/1.0/instances/"+n, nil); r.Status != 404 {
			t.Errorf("refused launch of %s left an instance: %d", n, r.Status)
		}
	}
}
