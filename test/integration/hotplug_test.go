package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// hostSource makes a directory every container root can write to.
func hostSource(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "moat-hotplug-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// putDevices replaces the instance's local devices.
func putDevices(t *testing.T, d *testdaemon.Daemon, name string, devices map[string]map[string]string) testdaemon.Result {
	t.Helper()
	var inst api.Instance
	d.Do("GET", "/1.0/instances/"+name, nil).Metadata(t, &inst)
	put := inst.InstancePut
	put.Devices = devices
	return d.Do("PUT", "/1.0/instances/"+name, put)
}

// TestDeviceHotplug: device changes on a running instance apply at once,
// through the API and the lxc client, and a restart gives the same.
func TestDeviceHotplug(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "h1", nil)
	src := hostSource(t)
	lxc := newLXC(t, d)

	// lxc config device add, as an LXD user would.
	lxc.run("config", "device", "add", "h1", "data", "disk", "source="+src, "path=/mnt/data")
	if code, _ := execOut(t, d, "h1", "sh", "-c", "echo in > /mnt/data/from-ct"); code != 0 {
		t.Fatal("write to hot-plugged disk failed")
	}
	if b, _ := os.ReadFile(filepath.Join(src, "from-ct")); string(b) != "in\n" {
		t.Fatalf("host sees %q", b)
	}

	// Changing it to read-only replaces the mount; container root cannot
	// make it writable again.
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/h1", map[string]any{"devices": map[string]any{
		"data": map[string]string{"type": "disk", "source": src, "path": "/mnt/data", "readonly": "true"},
	}}))
	attack := "mount -o remount,bind,rw /mnt/data; mount -o remount,rw /mnt/data; touch /mnt/data/attack"
	for _, when := range []string{"hot-plugged", "after restart"} {
		if code, _ := execOut(t, d, "h1", "sh", "-c", attack); code == 0 {
			t.Fatalf("%s: writing to a read-only disk after remount succeeded", when)
		}
		if _, err := os.Stat(filepath.Join(src, "attack")); err == nil {
			t.Fatalf("%s: the remount attack wrote to the host", when)
		}
		if _, out := execOut(t, d, "h1", "cat", "/mnt/data/from-ct"); out != "in\n" {
			t.Fatalf("%s: read-only disk reads %q", when, out)
		}
		if when == "hot-plugged" {
			mustSucceed(t, d, d.Do("PUT", "/1.0/instances/h1/state", map[string]any{"action": "restart", "timeout": 10}))
		}
	}

	// A unix-char device by source, usable at once.
	lxc.run("config", "device", "add", "h1", "mynull", "unix-char", "source=/dev/null", "path=/dev/mynull")
	if code, out := execOut(t, d, "h1", "sh", "-c", "echo x > /dev/mynull && stat -c %t:%T /dev/mynull"); code != 0 || out != "1:3\n" {
		t.Fatalf("hot-plugged /dev/mynull: %d %q", code, out)
	}

	// Removal: gone inside, the host source untouched.
	lxc.run("config", "device", "remove", "h1", "data")
	lxc.run("config", "device", "remove", "h1", "mynull")
	if code, _ := execOut(t, d, "h1", "test", "-e", "/mnt/data/from-ct"); code == 0 {
		t.Fatal("disk still mounted after removal")
	}
	if code, _ := execOut(t, d, "h1", "test", "-c", "/dev/mynull"); code == 0 {
		t.Fatal("device node still there after removal")
	}
	if b, _ := os.ReadFile(filepath.Join(src, "from-ct")); string(b) != "in\n" {
		t.Fatalf("host source after removal: %q", b)
	}
}

// TestDeviceHotplugRefused: an invalid change is a 400 naming the key and
// changes nothing; a valid change that cannot be applied live is stored,
// says so, and leaves the running container as it was.
func TestDeviceHotplugRefused(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "h2", nil)
	src := hostSource(t)
	_, mountsBefore := execOut(t, d, "h2", "cat", "/proc/self/mountinfo")
	var before api.Instance
	d.Do("GET", "/1.0/instances/h2", nil).Metadata(t, &before)

	for _, bad := range []struct {
		dev  map[string]string
		want string
	}{
		{map[string]string{"type": "disk", "source": "relative", "path": "/mnt/x"}, `"source"`},
		{map[string]string{"type": "disk", "source": src}, `"path"`},
		{map[string]string{"type": "disk", "source": src, "path": "/mnt/x", "readonly": "maybe"}, `"readonly"`},
		{map[string]string{"type": "unix-char", "path": "/dev/x", "major": "1"}, `"minor"`},
		{map[string]string{"type": "unix-block", "path": "/dev/x"}, `"source"`},
	} {
		res := d.Do("PATCH", "/1.0/instances/h2", map[string]any{"devices": map[string]any{"x": bad.dev}})
		if res.Status != 400 || !strings.Contains(res.Body.Error, bad.want) {
			t.Errorf("%v: %d %q, want 400 naming %s", bad.dev, res.Status, res.Body.Error, bad.want)
		}
	}
	var after api.Instance
	d.Do("GET", "/1.0/instances/h2", nil).Metadata(t, &after)
	if len(after.Devices) != len(before.Devices) {
		t.Fatalf("refused changes stored: %v", after.Devices)
	}
	if _, mounts := execOut(t, d, "h2", "cat", "/proc/self/mountinfo"); mounts != mountsBefore {
		t.Fatalf("refused changes changed the mounts:\n%s\nwas:\n%s", mounts, mountsBefore)
	}

	// A container user's symlink on the path: the change is stored but
	// not applied, and its first disk is not left half-mounted.
	if code, _ := execOut(t, d, "h2", "sh", "-c", "mkdir -p /home/u && ln -s /etc /home/u/link && chown -h 1000:1000 /home/u/link"); code != 0 {
		t.Fatal("planting the symlink failed")
	}
	res := putDevices(t, d, "h2", map[string]map[string]string{
		"a": {"type": "disk", "source": src, "path": "/mnt/a"},
		"z": {"type": "disk", "source": src, "path": "/home/u/link/z"},
	})
	if res.Status < 400 || !strings.Contains(res.Body.Error, "next start") {
		t.Fatalf("unappliable change: %d %q", res.Status, res.Body.Error)
	}
	t.Log(res.Body.Error)
	if _, mounts := execOut(t, d, "h2", "cat", "/proc/self/mountinfo"); mounts != mountsBefore {
		t.Fatalf("a refused hotplug left mounts:\n%s", mounts)
	}
	d.Do("GET", "/1.0/instances/h2", nil).Metadata(t, &after)
	if len(after.Devices) != 2 {
		t.Fatalf("the change was not stored: %v", after.Devices)
	}
}
