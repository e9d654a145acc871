package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// wait waits for the operation of an async response and returns it.
func wait(t testing.TB, d *testdaemon.Daemon, res testdaemon.Result) api.Operation {
	t.Helper()
	if res.Status != 202 {
		t.Fatalf("want an operation, got %d: %s", res.Status, res.Raw)
	}
	var op api.Operation
	res.Metadata(t, &op)
	w := d.Do("GET", "/1.0/operations/"+op.ID+"/wait?timeout=30", nil)
	w.Metadata(t, &op)
	return op
}

func mustSucceed(t testing.TB, d *testdaemon.Daemon, res testdaemon.Result) api.Operation {
	t.Helper()
	op := wait(t, d, res)
	if op.Status != "Success" {
		out, _ := exec.Command("sh", "-c", "ps -eo pid,ppid,stat,args --forest | grep -B2 -A6 'lxc monitor' | head -40").CombinedOutput()
		t.Fatalf("operation %s failed: %s\nprocesses:\n%s", op.Description, op.Err, out)
	}
	return op
}

// withImage starts a daemon with the busybox image imported as "bb".
func withImage(t testing.TB) (*testdaemon.Daemon, string) {
	t.Helper()
	path, fp := testdaemon.BusyboxImage(t)
	d := testdaemon.Start(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/images", raw))
	if res := d.Do("POST", "/1.0/images/aliases", map[string]string{"name": "bb", "target": fp}); res.Status != 201 {
		t.Fatalf("alias: %d %s", res.Status, res.Raw)
	}
	// Delete every instance at the end, so no container outlives the test.
	t.Cleanup(func() {
		var names []string
		d.Do("GET", "/1.0/instances", nil).Metadata(t, &names)
		for _, n := range names {
			if op := wait(t, d, d.Do("DELETE", n+"?force=true", nil)); op.Status != "Success" {
				t.Errorf("cleanup: deleting %s: %s", n, op.Err)
			}
		}
	})
	return d, fp
}

func launch(t testing.TB, d *testdaemon.Daemon, name string, cfg map[string]string) {
	t.Helper()
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": name, "source": map[string]string{"type": "image", "alias": "bb"}, "config": cfg, "start": true,
	}))
}

// execOut runs a command without websockets, recording its output.
func execOut(t testing.TB, d *testdaemon.Daemon, name string, cmd ...string) (int, string) {
	t.Helper()
	op := mustSucceed(t, d, d.Do("POST", "/1.0/instances/"+name+"/exec", map[string]any{
		"command": cmd, "record-output": true,
	}))
	code := int(op.Metadata["return"].(float64))
	out := op.Metadata["output"].(map[string]any)
	res, err := d.HTTPClient().Get("http://moat" + out["1"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	return code, buf.String()
}

func TestInstanceLifecycle(t *testing.T) {
	d, fp := withImage(t)
	launch(t, d, "c1", nil)

	var inst api.InstanceFull
	d.Do("GET", "/1.0/instances/c1?recursion=1", nil).Metadata(t, &inst)
	if inst.Status != "Running" || inst.State == nil || inst.State.Pid == 0 {
		t.Fatalf("c1 not running: %+v", inst)
	}
	if inst.Config["volatile.base_image"] != fp || inst.ExpandedConfig["security.idmap.isolated"] != "true" {
		t.Fatalf("config: %v", inst.ExpandedConfig)
	}
	code, out := execOut(t, d, "c1", "sh", "-c", "echo hello; exit 3")
	if code != 3 || out != "hello\n" {
		t.Fatalf("exec: code %d out %q", code, out)
	}

	// Stop (clean), start, freeze, unfreeze, restart.
	for _, action := range []string{"stop", "start", "freeze", "unfreeze", "restart"} {
		mustSucceed(t, d, d.Do("PUT", "/1.0/instances/c1/state", map[string]any{"action": action, "timeout": 10}))
		var st api.InstanceState
		d.Do("GET", "/1.0/instances/c1/state", nil).Metadata(t, &st)
		want := map[string]string{"stop": "Stopped", "freeze": "Frozen"}[action]
		if want == "" {
			want = "Running"
		}
		if st.Status != want {
			t.Fatalf("after %s: status %s", action, st.Status)
		}
	}

	// Running instances cannot be renamed or deleted without force.
	if res := d.Do("POST", "/1.0/instances/c1", map[string]string{"name": "c2"}); res.Status != 400 {
		t.Fatalf("rename running: %d", res.Status)
	}
	if res := d.Do("DELETE", "/1.0/instances/c1", nil); res.Status != 400 {
		t.Fatalf("delete running: %d", res.Status)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/c1/state", map[string]any{"action": "stop", "force": true}))
	mustSucceed(t, d, d.Do("POST", "/1.0/instances/c1", map[string]string{"name": "c2"}))
	if res := d.Do("GET", "/1.0/instances/c1", nil); res.Status != 404 {
		t.Fatalf("old name still there: %d", res.Status)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/c2/state", map[string]any{"action": "start"}))
	if code, _ := execOut(t, d, "c2", "hostname"); code != 0 {
		t.Fatalf("exec in renamed instance: %d", code)
	}
	// The walk sees the monitor cgroup of the running c2, so the check
	// after the delete can fail.
	mon := monitorCgroup(t, d, "c2")
	if len(lxcCgroupDirs(t, mon)) == 0 {
		t.Fatalf("the cgroup walk finds no %s while c2 runs", mon)
	}
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/c2?force=true", nil))
	if entries, _ := os.ReadDir(filepath.Join(d.Dir, "storage-pools/default/containers")); len(entries) != 0 {
		t.Fatalf("storage left behind: %v", entries)
	}
	// No cgroup of the container is left.
	if left := append(lxcCgroupDirs(t, mon), lxcCgroupDirs(t, "lxc.payload."+strings.TrimPrefix(mon, "lxc.monitor."))...); len(left) > 0 {
		t.Errorf("cgroups left behind: %v", left)
	}
}

func TestIsolatedMapsAndRootfsUnreachable(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "iso1", nil)
	launch(t, d, "iso2", nil)
	_, m1 := execOut(t, d, "iso1", "cat", "/proc/self/uid_map")
	_, m2 := execOut(t, d, "iso2", "cat", "/proc/self/uid_map")
	f1, f2 := strings.Fields(m1), strings.Fields(m2)
	if len(f1) != 3 || len(f2) != 3 || f1[1] == f2[1] {
		t.Fatalf("maps not disjoint: %q %q", m1, m2)
	}
	var a, b api.Instance
	d.Do("GET", "/1.0/instances/iso1", nil).Metadata(t, &a)
	d.Do("GET", "/1.0/instances/iso2", nil).Metadata(t, &b)
	if a.Config["volatile.idmap.base"] == b.Config["volatile.idmap.base"] || a.Config["volatile.idmap.current"] == "" {
		t.Fatalf("volatile.idmap: %v / %v", a.Config, b.Config)
	}

	// No host user reaches a rootfs: uid 65534 cannot list or stat into
	// the container dir.
	matches, _ := filepath.Glob(filepath.Join(d.Dir, "storage-pools/default/containers/*iso1"))
	if len(matches) != 1 {
		t.Fatalf("container dir of iso1: %v", matches)
	}
	dir := matches[0]
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o100 {
		t.Fatalf("container dir mode %v", fi.Mode())
	}
	cmd := exec.Command("/bin/busybox", "sh", "-c", "ls "+dir+"/rootfs/etc || stat "+dir+"/rootfs/sbin/init")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("uid 65534 reached the rootfs: err=%v out=%s", err, out)
	}
}

func TestInstanceConfigValidation(t *testing.T) {
	d, _ := withImage(t)
	bad := []struct {
		cfg  map[string]string
		want string
	}{
		{map[string]string{"limits.cpu": "99"}, "limits.cpu"},
		{map[string]string{"limits.processes": "-1"}, "limits.processes"},
		{map[string]string{"limits.memory": "lots"}, "limits.memory"},
		{map[string]string{"security.nesting": "true", "security.privileged": "true"}, "security.privileged.allow_nesting"},
		{map[string]string{"raw.idmap": "uid 1000 1000-1001"}, "raw.idmap"},
		{map[string]string{"bogus.key": "1"}, "bogus.key"},
		{map[string]string{"volatile.idmap.base": "0"}, "volatile.idmap.base"},
	}
	for _, c := range bad {
		res := d.Do("POST", "/1.0/instances", map[string]any{"name": "bad", "source": map[string]string{"type": "image", "alias": "bb"}, "config": c.cfg})
		if res.Status != 400 || !strings.Contains(res.Body.Error, c.want) {
			t.Errorf("config %v: status %d error %q, want 400 naming %s", c.cfg, res.Status, res.Body.Error, c.want)
		}
	}
	res := d.Do("POST", "/1.0/instances", map[string]any{"name": "bad", "source": map[string]string{"type": "image", "alias": "bb"},
		"devices": map[string]any{"d": map[string]string{"type": "disk", "path": "/mnt", "source": "relative"}}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, `"source"`) {
		t.Errorf("bad disk: %d %s", res.Status, res.Body.Error)
	}
	noInstancesLeft(t, d)

	// Updates go through the same check and change nothing when refused.
	launch(t, d, "c1", nil)
	var before api.Instance
	d.Do("GET", "/1.0/instances/c1", nil).Metadata(t, &before)
	res = d.Do("PATCH", "/1.0/instances/c1", map[string]any{"config": map[string]string{"limits.processes": "0"}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, "limits.processes") {
		t.Fatalf("patch: %d %s", res.Status, res.Body.Error)
	}
	// A profile change is re-checked for every instance using it.
	res = d.Do("PATCH", "/1.0/profiles/default", map[string]any{"config": map[string]string{"security.privileged": "true", "security.nesting": "true"}})
	if res.Status != 400 {
		t.Fatalf("profile privileged+nesting: %d %s", res.Status, res.Body.Error)
	}
	var after api.Instance
	d.Do("GET", "/1.0/instances/c1", nil).Metadata(t, &after)
	if len(after.ExpandedConfig) != len(before.ExpandedConfig) || after.ExpandedConfig["security.privileged"] != "" {
		t.Fatalf("refused updates changed the config: %v", after.ExpandedConfig)
	}
	// Limits apply live.
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/c1", map[string]any{"config": map[string]string{"limits.processes": "20"}}))
	code, out := execOut(t, d, "c1", "sh", "-c", "for i in $(seq 1 40); do sleep 5 & done; wait")
	if code == 0 && !strings.Contains(out, "fork") {
		t.Logf("fork bomb output: %q", out)
	}
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/c1/state", nil).Metadata(t, &st)
	if st.Processes > 20 {
		t.Fatalf("limits.processes=20 not enforced: %d processes", st.Processes)
	}
}

func TestFilesNeverFollowSymlinksOut(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "f1", nil)
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host data"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The container plants symlinks to host paths.
	if code, _ := execOut(t, d, "f1", "sh", "-c", "ln -s "+secret+" /escape && ln -s ../../../../../../.. /up"); code != 0 {
		t.Fatal("ln failed")
	}
	res, err := d.HTTPClient().Get("http://moat/1.0/instances/f1/files?path=/escape")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(res.Body)
	res.Body.Close()
	if strings.Contains(body.String(), "host data") || res.Header.Get("X-LXD-type") != "symlink" {
		t.Fatalf("GET of an escaping symlink: type %q body %q", res.Header.Get("X-LXD-type"), body.String())
	}
	// Writing through the symlink is refused, the host file untouched.
	r := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/f1/files?path=/escape", "pwned", nil)
	if r.Status < 400 {
		t.Fatalf("write through a symlink: %d", r.Status)
	}
	// A path through a directory symlink stays in the rootfs.
	r = testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/f1/files?path=/up"+secret, "pwned", nil)
	if b, _ := os.ReadFile(secret); string(b) != "host data" {
		t.Fatalf("host file changed: %q (status %d)", b, r.Status)
	}
	// Normal push with ownership and mode, then pull and delete.
	r = testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/f1/files?path=/root/x", "data",
		map[string]string{"X-LXD-uid": "1000", "X-LXD-gid": "1001", "X-LXD-mode": "0640"})
	if r.Status != 200 {
		t.Fatalf("push: %d %s", r.Status, r.Raw)
	}
	if _, out := execOut(t, d, "f1", "stat", "-c", "%u %g %a %s", "/root/x"); out != "1000 1001 640 4\n" {
		t.Fatalf("pushed file: %q", out)
	}
	if r := d.Do("DELETE", "/1.0/instances/f1/files?path=/root/x", nil); r.Status != 200 {
		t.Fatalf("delete: %d", r.Status)
	}
}

func TestReadonlyDisk(t *testing.T) {
	d, _ := withImage(t)
	// The container's root must be able to traverse to the source.
	src, err := os.MkdirTemp("", "moat-ro-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(src)
	os.Chmod(src, 0o755)
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "ro1", "source": map[string]string{"type": "image", "alias": "bb"}, "start": true,
		"devices": map[string]any{"data": map[string]string{"type": "disk", "source": src, "path": "/mnt/data", "readonly": "true"}},
	}))
	if code, _ := execOut(t, d, "ro1", "sh", "-c", "touch /mnt/data/x"); code == 0 {
		t.Fatal("write to a readonly disk succeeded")
	}
	if code, _ := execOut(t, d, "ro1", "ls", "/mnt/data"); code != 0 {
		t.Fatal("readonly disk not mounted")
	}
}

func TestInstancesSurviveRestartAndCrash(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "keep", nil)
	var before api.InstanceState
	d.Do("GET", "/1.0/instances/keep/state", nil).Metadata(t, &before)
	d.Kill()
	// A create interrupted before its commit point leaves storage without
	// a database row: the next start removes it.
	orphan := filepath.Join(d.Dir, "storage-pools/default/containers/orphan")
	stage := filepath.Join(d.Dir, "storage-pools/default/containers/.tmp-half-123")
	for _, p := range []string{orphan + "/rootfs", stage + "/rootfs"} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		// A create or delete interrupted with its overlay mounted: the
		// removal must unmount first, never empty the mount.
		if err := syscall.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+"/f", nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.Restart()
	var after api.InstanceState
	d.Do("GET", "/1.0/instances/keep/state", nil).Metadata(t, &after)
	if after.Status != "Running" || after.Pid != before.Pid {
		t.Fatalf("not re-adopted: before %+v after %+v", before, after)
	}
	if code, _ := execOut(t, d, "keep", "true"); code != 0 {
		t.Fatal("exec after restart failed")
	}
	for _, p := range []string{orphan, stage} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("leftover of an interrupted create not removed: %s", p)
		}
		if m := mountsUnder(t, p); len(m) != 0 {
			t.Errorf("mounts of an interrupted create left: %v", m)
		}
	}
	if dir := containerDir(t, d, "keep"); len(mountsUnder(t, dir)) != 1 {
		t.Errorf("rootfs of a running instance after a crash: %v", mountsUnder(t, dir))
	}
}

// badTarball writes a gzip'd tar with the given entries.
func badTarball(t *testing.T, entries []tar.Header, withMeta bool) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if withMeta {
		meta := "architecture: x86_64\ncreation_date: 1\n"
		tw.WriteHeader(&tar.Header{Name: "metadata.yaml", Mode: 0o644, Size: int64(len(meta)), Typeflag: tar.TypeReg})
		tw.Write([]byte(meta))
	}
	for _, h := range entries {
		h := h
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		tw.WriteHeader(&h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestImageUploadsRefused(t *testing.T) {
	path, _ := testdaemon.BusyboxImage(t)
	d := testdaemon.Start(t)
	good, _ := os.ReadFile(path)
	cases := map[string][]byte{
		"truncated": good[:len(good)/2],
		"corrupt":   append(append([]byte{}, good[:100]...), bytes.Repeat([]byte{0xAA}, 1000)...),
		"dotdot":    badTarball(t, []tar.Header{{Name: "rootfs/../../evil", Typeflag: tar.TypeReg, Mode: 0o644}}, true),
		"absolute":  badTarball(t, []tar.Header{{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}}, true),
		"via-symlink": badTarball(t, []tar.Header{
			{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "rootfs/etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
			{Name: "rootfs/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		}, true),
		"hardlink-out": badTarball(t, []tar.Header{
			{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "rootfs/shadow", Typeflag: tar.TypeLink, Linkname: "../etc/shadow"},
		}, true),
		"no-metadata": badTarball(t, []tar.Header{{Name: "rootfs/a", Typeflag: tar.TypeReg, Mode: 0o644}}, false),
	}
	for name, body := range cases {
		res := d.Do("POST", "/1.0/images", body)
		if res.Status != 400 || res.Body.Error == "" {
			t.Errorf("%s: status %d %q", name, res.Status, res.Body.Error)
		}
		t.Logf("%s: %s", name, res.Body.Error)
	}
	var list []string
	d.Do("GET", "/1.0/images", nil).Metadata(t, &list)
	entries, _ := os.ReadDir(filepath.Join(d.Dir, "images"))
	if len(list) != 0 || len(entries) != 0 {
		t.Fatalf("refused uploads left something: %v %v", list, entries)
	}
	if _, err := os.Stat("/etc/evil"); err == nil {
		t.Fatal("/etc/evil was written")
	}

	// Public flag: untrusted callers see only public images. The unix
	// socket is always trusted, so check the filter through the list a
	// fresh upload with X-LXD-public shows.
	res := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/images", good, map[string]string{"X-LXD-public": "true"})
	op := mustSucceed(t, d, res)
	var img api.Image
	d.Do("GET", "/1.0/images/"+op.Metadata["fingerprint"].(string), nil).Metadata(t, &img)
	if !img.Public {
		t.Fatal("X-LXD-public ignored")
	}
	mustSucceed(t, d, d.Do("DELETE", "/1.0/images/"+img.Fingerprint, nil))
	if entries, _ := os.ReadDir(filepath.Join(d.Dir, "images")); len(entries) != 0 {
		t.Fatalf("image files left after delete: %v", entries)
	}
}

func TestLifecycleEventsHaveRequestor(t *testing.T) {
	d, _ := withImage(t)
	lxc := newLXC(t, d)
	mon := lxc.cmd("monitor", "--type=lifecycle", "--format=json")
	var out bytes.Buffer
	mon.Stdout = &out
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { mon.Process.Kill(); mon.Wait() }()
	time.Sleep(300 * time.Millisecond)
	launch(t, d, "ev1", nil)
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/ev1?force=true", nil))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(out.String(), "instance-deleted") {
		time.Sleep(50 * time.Millisecond)
	}
	for _, action := range []string{"instance-created", "instance-started", "instance-deleted"} {
		found := false
		for _, line := range strings.Split(out.String(), "\n") {
			var ev struct {
				Metadata api.EventLifecycle `json:"metadata"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Metadata.Action == action {
				found = ev.Metadata.Requestor != nil && ev.Metadata.Requestor.Username != ""
			}
		}
		if !found {
			t.Errorf("no %s event with a requestor in:\n%s", action, out.String())
		}
	}
}

// lxcLaunched starts moatd, imports the busybox image with the real lxc
// client and launches c1 with it.
func lxcLaunched(t *testing.T) *lxcClient {
	t.Helper()
	path, _ := testdaemon.BusyboxImage(t)
	d := testdaemon.Start(t)
	lxc := newLXC(t, d)
	lxc.run("image", "import", path, "--alias", "bb")
	t.Cleanup(func() { lxc.cmd("delete", "-f", "c1").Run() })
	lxc.run("launch", "bb", "c1")
	return lxc
}

func TestLXCClientContainers(t *testing.T) {
	lxc := lxcLaunched(t)
	c := lxc.cmd("exec", "c1", "--", "sh", "-c", "exit 3")
	if err := c.Run(); err == nil || c.ProcessState.ExitCode() != 3 {
		t.Fatalf("lxc exec exit code: %v", err)
	}
	if out := lxc.run("exec", "c1", "--", "echo", "hi"); strings.TrimSpace(out) != "hi" {
		t.Fatalf("lxc exec output %q", out)
	}
	if out := lxc.run("list", "--format=csv", "-c", "ns"); !strings.Contains(out, "c1,RUNNING") {
		t.Fatalf("lxc list:\n%s", out)
	}
	lxc.run("config", "set", "c1", "limits.processes", "100")
	if out := lxc.run("config", "get", "c1", "limits.processes"); strings.TrimSpace(out) != "100" {
		t.Fatalf("lxc config get: %q", out)
	}
	if out, err := lxc.cmd("config", "set", "c1", "limits.processes", "--", "-1").CombinedOutput(); err == nil || !strings.Contains(string(out), "limits.processes") {
		t.Fatalf("lxc config set of a bad value: %v %s", err, out)
	}
	lxc.run("profile", "create", "p1")
	lxc.run("profile", "set", "p1", "limits.memory", "128MiB")
	lxc.run("profile", "add", "c1", "p1")
	if out := lxc.run("config", "show", "c1", "--expanded"); !strings.Contains(out, "limits.memory: 128MiB") {
		t.Fatalf("expanded config:\n%s", out)
	}
	if out := lxc.run("profile", "list"); !strings.Contains(out, "p1") {
		t.Fatalf("lxc profile list:\n%s", out)
	}
	f := filepath.Join(t.TempDir(), "pushed")
	os.WriteFile(f, []byte("pushed content\n"), 0o644)
	lxc.run("file", "push", f, "c1/root/pushed")
	if out := lxc.run("exec", "c1", "--", "cat", "/root/pushed"); out != "pushed content\n" {
		t.Fatalf("pushed file: %q", out)
	}
	lxc.run("delete", "-f", "c1")
	if out := lxc.run("list", "--format=csv"); strings.Contains(out, "c1") {
		t.Fatalf("deleted instance listed:\n%s", out)
	}
}

// treeSum hashes a tree's names, types, owners, modes, link targets and
// file contents, never following a symlink.
func treeSum(t testing.TB, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %o %d %d\n", strings.TrimPrefix(p, root), st.Mode, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			l, _ := os.Readlink(p)
			h.Write([]byte(l))
		case syscall.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// containerDir is the storage dir of an instance of the default project.
func containerDir(t testing.TB, d *testdaemon.Daemon, name string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(d.Dir, "storage-pools/default/containers/*"+name))
	if len(m) != 1 {
		t.Fatalf("storage of %s: %v", name, m)
	}
	return m[0]
}

// mountsUnder lists the mount points at or below dir with their types.
func mountsUnder(t testing.TB, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) > 4 && len(g) > 0 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out[f[4]] = g[0]
		}
	}
	return out
}

func getFile(t testing.TB, d *testdaemon.Daemon, name, path string) (string, http.Header) {
	t.Helper()
	res, err := d.HTTPClient().Get("http://moat/1.0/instances/" + name + "/files?path=" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s:%s: %d %s", name, path, res.StatusCode, b)
	}
	return string(b), res.Header
}

// Containers from one image share its rootfs as a read-only lower layer:
// what one changes, the image and the other never see, and deleting one
// leaves both intact. The rootfs is an overlay mount that follows a
// rename and is gone with the instance.
func TestOverlayRootfsIsolatedFromImageAndSiblings(t *testing.T) {
	d, fp := withImage(t)
	image := filepath.Join(d.Dir, "images", fp+".rootfs")
	before := treeSum(t, image)
	launch(t, d, "o1", nil)
	launch(t, d, "o2", nil)
	dir1 := containerDir(t, d, "o1")
	if m := mountsUnder(t, dir1); len(m) != 1 || m[dir1+"/rootfs"] != "overlay" {
		t.Fatalf("mounts under %s: %v", dir1, m)
	}
	script := "echo mine > /etc/o1-file && rm /etc/passwd && echo changed > /bin/init-note && chmod 700 /root && adduser -D -u 1000 u1 2>/dev/null; touch /tmp/by-user && chown 1000:1000 /tmp/by-user"
	if code, out := execOut(t, d, "o1", "sh", "-c", script); code != 0 {
		t.Fatalf("changes in o1: %d %s", code, out)
	}
	if code, out := execOut(t, d, "o2", "sh", "-c", "test -e /etc/o1-file || test ! -e /etc/passwd || test -e /tmp/by-user"); code == 0 {
		t.Fatalf("o2 sees o1's changes: %s", out)
	}
	if after := treeSum(t, image); after != before {
		t.Fatal("the image rootfs changed")
	}
	// The files API reads the overlay with container ids.
	body, hdr := getFile(t, d, "o1", "/tmp/by-user")
	if body != "" || hdr.Get("X-LXD-uid") != "1000" || hdr.Get("X-LXD-gid") != "1000" {
		t.Fatalf("files API owner of /tmp/by-user: %s:%s", hdr.Get("X-LXD-uid"), hdr.Get("X-LXD-gid"))
	}
	if _, hdr := getFile(t, d, "o1", "/bin"); hdr.Get("X-LXD-uid") != "0" {
		t.Fatalf("files API owner of an image dir: %s", hdr.Get("X-LXD-uid"))
	}
	// A uid outside the map is refused, naming the header.
	r := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/o1/files?path=/tmp/far", "x", map[string]string{"X-LXD-uid": "4000000000"})
	if r.Status != 400 || !strings.Contains(r.Body.Error, "X-LXD-uid") {
		t.Fatalf("unmapped uid: %d %s", r.Status, r.Raw)
	}

	// Rename: the mount follows, the old path holds none.
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/o1/state", map[string]any{"action": "stop", "force": true}))
	mustSucceed(t, d, d.Do("POST", "/1.0/instances/o1", map[string]string{"name": "o3"}))
	if m := mountsUnder(t, dir1); len(m) != 0 {
		t.Fatalf("mounts left at the old name: %v", m)
	}
	if body, _ := getFile(t, d, "o3", "/etc/o1-file"); body != "mine\n" {
		t.Fatalf("file after rename: %q", body)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/o3/state", map[string]any{"action": "start"}))
	if code, out := execOut(t, d, "o3", "cat", "/etc/o1-file"); code != 0 || out != "mine\n" {
		t.Fatalf("exec after rename: %d %q", code, out)
	}

	// Deleting o3 unmounts and removes only its own storage.
	dir3 := containerDir(t, d, "o3")
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/o3?force=true", nil))
	if _, err := os.Lstat(dir3); !os.IsNotExist(err) {
		t.Fatalf("storage of o3 left: %v", err)
	}
	if m := mountsUnder(t, dir3); len(m) != 0 {
		t.Fatalf("mounts of o3 left: %v", m)
	}
	if after := treeSum(t, image); after != before {
		t.Fatal("deleting a container changed the image rootfs")
	}
	if code, out := execOut(t, d, "o2", "cat", "/etc/passwd"); code != 0 || !strings.Contains(out, "root:") {
		t.Fatalf("o2 after o3's delete: %d %q", code, out)
	}
}

// A stopped container whose ID map changes keeps its files owned by the
// same container ids: the upper layer is shifted before the next start.
func TestIDMapChangeShiftsUpperLayer(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "s1", nil)
	if code, out := execOut(t, d, "s1", "sh", "-c", "echo r > /root/r && mkdir /home/u && echo u > /home/u/f && chown -R 1000:1001 /home/u"); code != 0 {
		t.Fatalf("writing files: %d %s", code, out)
	}
	var before api.Instance
	d.Do("GET", "/1.0/instances/s1", nil).Metadata(t, &before)
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/s1/state", map[string]any{"action": "stop", "force": true}))

	// While stopped, the files API keeps working with the map on disk.
	r := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/s1/files?path=/home/u/pushed", "p",
		map[string]string{"X-LXD-uid": "1000", "X-LXD-gid": "1001"})
	if r.Status != 200 {
		t.Fatalf("push while stopped: %d %s", r.Status, r.Raw)
	}

	for _, cfg := range []map[string]string{
		{"security.idmap.isolated": "false"},
		{"security.idmap.isolated": "true", "security.idmap.size": "131072"},
	} {
		mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/s1", map[string]any{"config": cfg}))
		mustSucceed(t, d, d.Do("PUT", "/1.0/instances/s1/state", map[string]any{"action": "start"}))
		var after api.Instance
		d.Do("GET", "/1.0/instances/s1", nil).Metadata(t, &after)
		if after.Config["volatile.idmap.current"] == before.Config["volatile.idmap.current"] {
			t.Fatalf("%v did not change the map: %s", cfg, after.Config["volatile.idmap.current"])
		}
		if after.Config["volatile.last_state.idmap"] != after.Config["volatile.idmap.current"] {
			t.Fatalf("last_state.idmap %s, current %s", after.Config["volatile.last_state.idmap"], after.Config["volatile.idmap.current"])
		}
		code, out := execOut(t, d, "s1", "stat", "-c", "%n %u %g", "/root/r", "/home/u", "/home/u/f", "/home/u/pushed", "/bin/busybox")
		want := "/root/r 0 0\n/home/u 1000 1001\n/home/u/f 1000 1001\n/home/u/pushed 1000 1001\n/bin/busybox 0 0\n"
		if code != 0 || out != want {
			t.Fatalf("after %v: owners %q, want %q", cfg, out, want)
		}
		// On disk: the new map's host ids.
		var m []map[string]any
		if err := json.Unmarshal([]byte(after.Config["volatile.idmap.current"]), &m); err != nil || len(m) == 0 {
			t.Fatalf("idmap.current: %v", err)
		}
		base := uint32(m[0]["Hostid"].(float64))
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(containerDir(t, d, "s1"), "upper/home/u/f"), &st); err != nil || st.Uid != base+1000 || st.Gid != base+1001 {
			t.Fatalf("upper layer file: %d:%d, want %d (%v)", st.Uid, st.Gid, base+1000, err)
		}
		before = after
		mustSucceed(t, d, d.Do("PUT", "/1.0/instances/s1/state", map[string]any{"action": "stop", "force": true}))
	}

	// A map too small for a file's owner is refused at start, changing
	// nothing: the files API still works, and the old size starts again.
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/s1/state", map[string]any{"action": "start"}))
	if code, out := execOut(t, d, "s1", "sh", "-c", "touch /root/big && chown 70000:70000 /root/big"); code != 0 {
		t.Fatalf("chown 70000: %d %s", code, out)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/s1/state", map[string]any{"action": "stop", "force": true}))
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/s1", map[string]any{"config": map[string]string{"security.idmap.size": "65536"}}))
	if op := wait(t, d, d.Do("PUT", "/1.0/instances/s1/state", map[string]any{"action": "start"})); op.Status == "Success" || !strings.Contains(op.Err, "uid 70000") {
		t.Fatalf("start with a map that does not cover uid 70000: %s %q", op.Status, op.Err)
	}
	if _, hdr := getFile(t, d, "s1", "/root/big"); hdr.Get("X-LXD-uid") != "70000" {
		t.Fatalf("files API after a refused shift: uid %s", hdr.Get("X-LXD-uid"))
	}
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/s1", map[string]any{"config": map[string]string{"security.idmap.size": "131072"}}))
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/s1/state", map[string]any{"action": "start"}))
	if code, out := execOut(t, d, "s1", "stat", "-c", "%u %g", "/root/big", "/home/u/f"); code != 0 || out != "70000 70000\n1000 1001\n" {
		t.Fatalf("owners after the refused shift: %q", out)
	}
}

// Deleting an image keeps its files while containers made from it exist
// (they are their lower layer), across a daemon restart; the last
// container's delete removes them.
func TestDeletedImageKeptForItsContainers(t *testing.T) {
	d, fp := withImage(t)
	image := filepath.Join(d.Dir, "images", fp+".rootfs")
	launch(t, d, "k1", nil)
	mustSucceed(t, d, d.Do("DELETE", "/1.0/images/"+fp, nil))
	if res := d.Do("GET", "/1.0/images/"+fp, nil); res.Status != 404 {
		t.Fatalf("deleted image still listed: %d", res.Status)
	}
	if _, err := os.Stat(image); err != nil {
		t.Fatalf("image rootfs removed under a container: %v", err)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/k1/state", map[string]any{"action": "stop", "force": true}))
	d.Kill()
	// As after a host reboot: nothing mounted.
	dir := containerDir(t, d, "k1")
	if err := syscall.Unmount(dir+"/rootfs", 0); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if m := mountsUnder(t, dir); m[dir+"/rootfs"] != "overlay" {
		t.Fatalf("rootfs not mounted at start: %v", m)
	}
	if _, err := os.Stat(image); err != nil {
		t.Fatalf("image rootfs pruned at start under a container: %v", err)
	}
	if body, _ := getFile(t, d, "k1", "/etc/passwd"); !strings.Contains(body, "root:") {
		t.Fatalf("image file through the remounted overlay: %q", body)
	}
	// A moatd restart keeps the mount (one, not stacked).
	d.Stop()
	d.Restart()
	if m := mountsUnder(t, dir); len(m) != 1 {
		t.Fatalf("mounts after a restart: %v", m)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/k1/state", map[string]any{"action": "start"}))
	if code, _ := execOut(t, d, "k1", "true"); code != 0 {
		t.Fatal("exec in a container of a deleted image")
	}
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/k1?force=true", nil))
	if _, err := os.Stat(image); !os.IsNotExist(err) {
		t.Fatalf("image rootfs left after its last container: %v", err)
	}
}

// Something else mounted over a container's rootfs (by another process,
// or left by an admin) is never taken for the container's overlay: files
// and start refuse it, and work again once it is gone.
func TestForeignMountOnRootfsRefused(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "fm", nil)
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/fm/state", map[string]any{"action": "stop", "force": true}))
	rootfs := containerDir(t, d, "fm") + "/rootfs"
	if err := syscall.Mount("tmpfs", rootfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(rootfs, syscall.MNT_DETACH) })
	if err := os.WriteFile(rootfs+"/planted", []byte("not the container's"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := d.HTTPClient().Get("http://moat/1.0/instances/fm/files?path=/planted")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == 200 || strings.Contains(string(b), "not the container's") {
		t.Fatalf("files API read through a foreign mount: %d %s", res.StatusCode, b)
	}
	if op := wait(t, d, d.Do("PUT", "/1.0/instances/fm/state", map[string]any{"action": "start"})); op.Status == "Success" || !strings.Contains(op.Err, "unexpected mount") {
		t.Fatalf("start on a foreign mount: %s %q", op.Status, op.Err)
	}
	if err := syscall.Unmount(rootfs, 0); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/fm/state", map[string]any{"action": "start"}))
	if body, _ := getFile(t, d, "fm", "/etc/passwd"); !strings.Contains(body, "root:") {
		t.Fatalf("files after the foreign mount is gone: %q", body)
	}
}
