package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/moat/moat/api"
)

// TestUnixDeviceOwnerAndRequired: a unix device's uid, gid and mode are
// what the container sees on its node, at start and on hot-plug (for a
// privileged container too); a missing source with required=false leaves
// the device out and the container runs, while the default keeps refusing
// the start, naming the device.
func TestUnixDeviceOwnerAndRequired(t *testing.T) {
	d, _ := withImage(t)
	const missing = "/dev/moat-test-no-such-device"
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "own", "start": true,
		"source": map[string]string{"type": "image", "alias": "bb"},
		"devices": map[string]any{
			"null": map[string]string{"type": "unix-char", "source": "/dev/null", "path": "/dev/ownnull", "uid": "1000", "gid": "33", "mode": "0640"},
			"opt":  map[string]string{"type": "unix-char", "source": missing, "path": "/dev/opt", "required": "false"},
		}}))
	if code, out := execOut(t, d, "own", "stat", "-c", "%u %g %a", "/dev/ownnull"); code != 0 || out != "1000 33 640\n" {
		t.Fatalf("node at start: %d %q, want 1000 33 640", code, out)
	}
	if code, _ := execOut(t, d, "own", "test", "-e", "/dev/opt"); code == 0 {
		t.Fatal("a device with a missing source was created")
	}

	// Hot-plug: an owned node, and a missing optional one that is skipped.
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/own", map[string]any{"devices": map[string]any{
		"zero": map[string]string{"type": "unix-char", "source": "/dev/zero", "path": "/dev/ownzero", "uid": "7", "gid": "8", "mode": "0604"},
		"opt2": map[string]string{"type": "unix-block", "source": missing, "path": "/dev/opt2", "required": "false"},
	}}))
	if code, out := execOut(t, d, "own", "stat", "-c", "%u %g %a", "/dev/ownzero"); code != 0 || out != "7 8 604\n" {
		t.Fatalf("hot-plugged node: %d %q, want 7 8 604", code, out)
	}
	if code, _ := execOut(t, d, "own", "test", "-e", "/dev/opt2"); code == 0 {
		t.Fatal("a hot-plugged device with a missing source was created")
	}
	// The owners survive a restart.
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/own/state", map[string]any{"action": "restart", "timeout": 10}))
	if code, out := execOut(t, d, "own", "stat", "-c", "%u %g %a", "/dev/ownnull", "/dev/ownzero"); code != 0 || out != "1000 33 640\n7 8 604\n" {
		t.Fatalf("nodes after restart: %d %q", code, out)
	}

	// Privileged: the ids are the host's.
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "ownpriv", "start": true,
		"source": map[string]string{"type": "image", "alias": "bb"}, "config": map[string]string{"security.privileged": "true"},
		"devices": map[string]any{
			"null": map[string]string{"type": "unix-char", "source": "/dev/null", "path": "/dev/ownnull", "uid": "1000", "gid": "33"},
		}}))
	if code, out := execOut(t, d, "ownpriv", "stat", "-c", "%u %g %a", "/dev/ownnull"); code != 0 || out != "1000 33 660\n" {
		t.Fatalf("privileged node: %d %q, want 1000 33 660", code, out)
	}

	// required (the default): the start fails and says which device.
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "req",
		"source": map[string]string{"type": "image", "alias": "bb"},
		"devices": map[string]any{
			"gone": map[string]string{"type": "unix-char", "source": missing, "path": "/dev/gone"},
		}}))
	op := wait(t, d, d.Do("PUT", "/1.0/instances/req/state", map[string]any{"action": "start"}))
	if op.Status == "Success" || !strings.Contains(op.Err, `"gone"`) || !strings.Contains(op.Err, missing) {
		t.Fatalf("start with a missing required device: %s %q", op.Status, op.Err)
	}
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/req/state", nil).Metadata(t, &st)
	// The daemon shows an instance whose spec cannot be built as Error.
	if st.Status == "Running" || st.Pid != 0 {
		t.Fatalf("req is %s (pid %d)", st.Status, st.Pid)
	}

	// An owner outside the container's ID map is refused, naming the
	// key: at create once the daemon checks it with the map it computes,
	// at the latest when the start builds the spec.
	res := d.Do("POST", "/1.0/instances", map[string]any{"name": "far",
		"source": map[string]string{"type": "image", "alias": "bb"}, "config": map[string]string{"security.idmap.size": "65536"},
		"devices": map[string]any{
			"far": map[string]string{"type": "unix-char", "source": "/dev/null", "path": "/dev/far", "uid": "70000"},
		}})
	msg := res.Body.Error
	if res.Status == 202 {
		mustSucceed(t, d, res)
		op := wait(t, d, d.Do("PUT", "/1.0/instances/far/state", map[string]any{"action": "start"}))
		msg = op.Err
	}
	if !strings.Contains(msg, `"far"`) || !strings.Contains(msg, `"uid"`) || !strings.Contains(msg, "70000") {
		t.Fatalf("unmapped uid: %d %q", res.Status, msg)
	}
}

// TestRootDiskAndDiskKeys: the root disk and unknown disk keys are 400s
// naming device and key, and nothing is created.
func TestRootDiskAndDiskKeys(t *testing.T) {
	d, _ := withImage(t)
	for _, tt := range []struct {
		name     string
		profiles []string
		devices  map[string]map[string]string
		want     []string
	}{
		{"no root disk", []string{}, map[string]map[string]string{}, []string{"root disk"}},
		{"root with a source", nil, map[string]map[string]string{"root": {"type": "disk", "path": "/", "pool": "default", "source": "/srv"}}, []string{`"root"`, `"source"`}},
		{"root without a pool", nil, map[string]map[string]string{"root": {"type": "disk", "path": "/"}}, []string{`"root"`, `"pool"`}},
		{"root readonly", nil, map[string]map[string]string{"root": {"type": "disk", "path": "/", "pool": "default", "readonly": "true"}}, []string{`"root"`, `"readonly"`}},
		{"root required", nil, map[string]map[string]string{"root": {"type": "disk", "path": "/", "pool": "default", "required": "false"}}, []string{`"root"`, `"required"`}},
		{"size on a non-root disk", nil, map[string]map[string]string{"data": {"type": "disk", "source": "/srv", "path": "/mnt", "size": "1GiB"}}, []string{`"data"`, `"size"`}},
		{"unknown disk key", nil, map[string]map[string]string{"data": {"type": "disk", "source": "/srv", "path": "/mnt", "bogus": "1"}}, []string{`"data"`, `"bogus"`}},
	} {
		body := map[string]any{"name": "rootless", "source": map[string]string{"type": "image", "alias": "bb"}, "devices": tt.devices}
		if tt.profiles != nil {
			body["profiles"] = tt.profiles
		}
		res := d.Do("POST", "/1.0/instances", body)
		if res.Status != 400 {
			t.Errorf("%s: %d %s, want 400", tt.name, res.Status, res.Raw)
			if res.Status == 202 {
				wait(t, d, d.Do("DELETE", "/1.0/instances/rootless", nil))
			}
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(res.Body.Error, w) {
				t.Errorf("%s: %q does not name %s", tt.name, res.Body.Error, w)
			}
		}
	}
	noInstancesLeft(t, d)

	// A profile's root disk is checked the same way.
	res := d.Do("PATCH", "/1.0/profiles/default", map[string]any{"devices": map[string]any{
		"root": map[string]string{"type": "disk", "path": "/", "pool": "default", "readonly": "true"},
	}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, `"readonly"`) {
		t.Fatalf("profile root readonly: %d %q", res.Status, res.Body.Error)
	}
}

// TestMemoryLimitOverflow: a limits.memory the kernel cannot take (over
// 2^63-1 bytes, though ParseByteSize goes to 2^64-1) is a 400 at the
// config check, on create and on update, and changes nothing.
func TestMemoryLimitOverflow(t *testing.T) {
	d, _ := withImage(t)
	for _, v := range []string{"9EiB", "15EiB", "9223372036854775808"} {
		res := gapCreate(d, "huge", map[string]string{"limits.memory": v}, nil)
		if res.Status != 400 || !strings.Contains(res.Body.Error, "limits.memory") {
			t.Errorf("limits.memory=%s: %d %q", v, res.Status, res.Body.Error)
		}
	}
	noInstancesLeft(t, d)
	launch(t, d, "mem", map[string]string{"limits.memory": "256MiB"})
	res := d.Do("PATCH", "/1.0/instances/mem", map[string]any{"config": map[string]string{"limits.memory": "9EiB"}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, "limits.memory") {
		t.Fatalf("update to 9EiB: %d %q", res.Status, res.Body.Error)
	}
	var inst api.Instance
	d.Do("GET", "/1.0/instances/mem", nil).Metadata(t, &inst)
	if inst.Config["limits.memory"] != "256MiB" {
		t.Fatalf("refused update stored: %q", inst.Config["limits.memory"])
	}
	if got := cgroupInt(t, d, "mem", "memory", "memory.limit_in_bytes"); got != 256<<20 {
		t.Fatalf("refused update reached the cgroup: %d", got)
	}
	// The largest accepted size starts.
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/mem", map[string]any{"config": map[string]string{"limits.memory": "7EiB"}}))
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/mem/state", map[string]any{"action": "restart", "timeout": 10}))
}

// TestCPUCountBalanced: two containers with limits.cpu=1 get different
// CPUs instead of both landing on CPU 0.
func TestCPUCountBalanced(t *testing.T) {
	d, _ := withImage(t)
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err != nil || !strings.ContainsAny(string(b), ",-") {
		t.Fatalf("the test needs two online CPUs, the host has %q (%v)", b, err)
	}
	launch(t, d, "cpua", map[string]string{"limits.cpu": "1"})
	launch(t, d, "cpub", map[string]string{"limits.cpu": "1"})
	a, b := cgroupFile(t, d, "cpua", "cpuset", "cpuset.cpus"), cgroupFile(t, d, "cpub", "cpuset", "cpuset.cpus")
	if a == b || strings.ContainsAny(a+b, ",-") {
		t.Fatalf("limits.cpu=1 containers on CPUs %q and %q", a, b)
	}
	for _, name := range []string{"cpua", "cpub"} {
		if code, out := execOut(t, d, name, "nproc"); code != 0 || out != "1\n" {
			t.Fatalf("%s: nproc %d %q", name, code, out)
		}
	}
	// An unrelated change does not move a container.
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/cpua", map[string]any{"config": map[string]string{"limits.processes": "500"}}))
	if got := cgroupFile(t, d, "cpua", "cpuset", "cpuset.cpus"); got != a {
		t.Fatalf("an unrelated update moved cpua from CPU %s to %s", a, got)
	}
}

// TestCPUCountBalancedAfterRestart: containers re-adopted by a restarted
// daemon count for the balance as the ones it started: a new limits.cpu=1
// container avoids the CPU of the running one.
func TestCPUCountBalancedAfterRestart(t *testing.T) {
	d, _ := withImage(t)
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err != nil || !strings.ContainsAny(string(b), ",-") {
		t.Fatalf("the test needs two online CPUs, the host has %q (%v)", b, err)
	}
	launch(t, d, "cpur", map[string]string{"limits.cpu": "1"})
	a := cgroupFile(t, d, "cpur", "cpuset", "cpuset.cpus")
	d.Stop()
	d.Restart()
	launch(t, d, "cpun", map[string]string{"limits.cpu": "1"})
	if b := cgroupFile(t, d, "cpun", "cpuset", "cpuset.cpus"); b == a {
		t.Fatalf("the new container shares CPU %s with the re-adopted one", a)
	}
}
