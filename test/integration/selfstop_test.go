package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// lifecycleOf reads lifecycle events until one about source has an action
// in want, failing after a bounded wait; it returns that event and every
// lifecycle event about source seen on the way.
func lifecycleOf(t *testing.T, c *websocket.Conn, source string, want ...string) (api.EventLifecycle, []api.EventLifecycle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var seen []api.EventLifecycle
	for {
		_, buf, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("no %v event for %s (seen %+v): %v", want, source, seen, err)
		}
		var ev api.Event
		var lc api.EventLifecycle
		if json.Unmarshal(buf, &ev) != nil || ev.Type != "lifecycle" || json.Unmarshal(ev.Metadata, &lc) != nil || lc.Source != source {
			continue
		}
		seen = append(seen, lc)
		for _, a := range want {
			if lc.Action == a {
				return lc, seen
			}
		}
	}
}

// insideAsync runs a command in the container that takes the container
// down with it; whatever the exec reports is irrelevant.
func insideAsync(t *testing.T, d *testdaemon.Daemon, name string, cmd ...string) {
	t.Helper()
	res := d.Do("POST", "/1.0/instances/"+name+"/exec", map[string]any{"command": cmd, "record-output": true})
	if res.Status != 202 {
		t.Fatalf("exec %v: %d %s", cmd, res.Status, res.Raw)
	}
}

// exitInfoSupported reports whether the kernel keeps the exit status of
// a process for pidfd holders (PIDFD_INFO_EXIT, Linux 6.15): without it
// moatd cannot tell a clean exit from a kill and reports instance-stopped.
func exitInfoSupported(t *testing.T) bool {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	_ = cmd.Wait()
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT}
	return unix.IoctlPidfdInfo(fd, &info) == nil && info.Mask&unix.PIDFD_INFO_EXIT != 0
}

func instanceGet(t *testing.T, d *testdaemon.Daemon, name string) api.Instance {
	t.Helper()
	var in api.Instance
	res := d.Do("GET", "/1.0/instances/"+name, nil)
	if res.Status != 200 {
		t.Fatalf("GET %s: %d %s", name, res.Status, res.Raw)
	}
	res.Metadata(t, &in)
	return in
}

// requireStoppedOnItsOwn checks what a stop from inside leaves: Stopped,
// the power state recorded, and no cgroups of the run.
func requireStoppedOnItsOwn(t *testing.T, d *testdaemon.Daemon, name string) {
	t.Helper()
	in := instanceGet(t, d, name)
	if in.Status != "Stopped" {
		t.Errorf("%s: status %s after stopping on its own", name, in.Status)
	}
	if p := in.Config["volatile.last_state.power"]; p != "STOPPED" {
		t.Errorf("%s: volatile.last_state.power = %q, want STOPPED", name, p)
	}
	if left := cgroupsOf(d, name); len(left) > 0 {
		t.Errorf("%s: cgroups left: %v", name, left)
	}
}

// cgroupsOf lists the liblxc cgroups (monitor and payload) of an instance
// of the default project of d, in every hierarchy.
func cgroupsOf(d *testdaemon.Daemon, name string) []string {
	abs, _ := filepath.Abs(d.Dir)
	sum := sha256.Sum256([]byte(abs))
	lxcName := "m" + hex.EncodeToString(sum[:3]) + "." + name
	var out []string
	for _, depth := range []string{"*", "*/*", "*/*/*"} {
		for _, kind := range []string{"lxc.monitor.", "lxc.payload."} {
			m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", depth, kind+lxcName))
			out = append(out, m...)
		}
	}
	return out
}

func TestSelfStopPoweroffKillAndEphemeral(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "so-off", nil)
	launch(t, d, "so-kill", nil)
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "so-eph", "source": map[string]string{"type": "image", "alias": "bb"}, "ephemeral": true, "start": true,
	}))
	ephDir := containerDir(t, d, "so-eph")
	if len(cgroupsOf(d, "so-off")) == 0 {
		t.Fatal("no cgroups found for a running container: the leftover check would prove nothing")
	}
	life := dialEvents(t, d, "?type=lifecycle")

	// poweroff -f: reboot(2) from a shell inside. The kernel reports it
	// as init killed (see lxcdriver.Ending), so either action is right.
	insideAsync(t, d, "so-off", "poweroff", "-f")
	ev, _ := lifecycleOf(t, life, "/1.0/instances/so-off", "instance-shutdown", "instance-stopped")
	if ev.Requestor != nil {
		t.Errorf("a stop from inside has a requestor: %+v", ev.Requestor)
	}
	requireStoppedOnItsOwn(t, d, "so-off")

	// Init exiting by itself (the image's init exits 0 on SIGTERM) is a
	// clean shutdown from inside.
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/so-off/state", map[string]any{"action": "start"}))
	insideAsync(t, d, "so-off", "kill", "-TERM", "1")
	ev, _ = lifecycleOf(t, life, "/1.0/instances/so-off", "instance-shutdown", "instance-stopped")
	if exitInfoSupported(t) && ev.Action != "instance-shutdown" {
		t.Errorf("init exiting 0 reported as %s", ev.Action)
	}
	requireStoppedOnItsOwn(t, d, "so-off")

	// SIGKILL of init from the host is not a clean shutdown.
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/so-kill/state", nil).Metadata(t, &st)
	if st.Pid <= 0 {
		t.Fatalf("state of so-kill: %+v", st)
	}
	if err := syscall.Kill(int(st.Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev, _ = lifecycleOf(t, life, "/1.0/instances/so-kill", "instance-shutdown", "instance-stopped")
	if ev.Action != "instance-stopped" {
		t.Errorf("kill -9 of init reported as %s", ev.Action)
	}
	requireStoppedOnItsOwn(t, d, "so-kill")
	// A stopped instance starts again and is watched again.
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/so-kill/state", map[string]any{"action": "start"}))
	insideAsync(t, d, "so-kill", "halt", "-f")
	lifecycleOf(t, life, "/1.0/instances/so-kill", "instance-shutdown", "instance-stopped")
	requireStoppedOnItsOwn(t, d, "so-kill")

	// An ephemeral instance that powers off is deleted, storage and all.
	insideAsync(t, d, "so-eph", "poweroff", "-f")
	_, seen := lifecycleOf(t, life, "/1.0/instances/so-eph", "instance-deleted")
	seen = slices.DeleteFunc(seen, func(e api.EventLifecycle) bool { return e.Action == "instance-exec" })
	if len(seen) != 2 || (seen[0].Action != "instance-shutdown" && seen[0].Action != "instance-stopped") {
		t.Errorf("events of an ephemeral instance powering off: %+v", seen)
	}
	if res := d.Do("GET", "/1.0/instances/so-eph", nil); res.Status != 404 {
		t.Errorf("ephemeral instance after poweroff: %d %s", res.Status, res.Raw)
	}
	if _, err := os.Stat(ephDir); !os.IsNotExist(err) {
		t.Errorf("storage of the ephemeral instance left: %s (%v)", ephDir, err)
	}
	if m := mountsUnder(t, ephDir); len(m) != 0 {
		t.Errorf("mounts of the ephemeral instance left: %v", m)
	}
	if left := cgroupsOf(d, "so-eph"); len(left) > 0 {
		t.Errorf("cgroups of the ephemeral instance left: %v", left)
	}
}

// Stops and restarts through the API are reported once, by the API path.
func TestSelfStopNotReportedForAPIStopAndRestart(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "so-api", nil)
	life := dialEvents(t, d, "?type=lifecycle")
	src := "/1.0/instances/so-api"
	// fence makes the daemon emit one more event for the instance once
	// the instance lock is free again: everything the stop or restart
	// caused (including a watch that woke up) is seen before it.
	fence := func(desc string) []api.EventLifecycle {
		t.Helper()
		res := d.Do("PATCH", src, map[string]any{"description": desc})
		if res.Status != 202 && res.Status != 200 {
			t.Fatalf("PATCH: %d %s", res.Status, res.Raw)
		}
		_, seen := lifecycleOf(t, life, src, "instance-updated")
		return seen
	}
	count := func(seen []api.EventLifecycle, action string) int {
		n := 0
		for _, e := range seen {
			if e.Action == action {
				n++
			}
		}
		return n
	}

	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "stop", "timeout": 30}))
	seen := fence("after stop")
	if count(seen, "instance-shutdown") != 1 || count(seen, "instance-stopped") != 0 {
		t.Errorf("events of an API stop: %+v", seen)
	}
	for _, e := range seen {
		if e.Action == "instance-shutdown" && e.Requestor == nil {
			t.Errorf("the API stop's event lost its requestor: %+v", e)
		}
	}

	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "start"}))
	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "restart", "timeout": 30}))
	seen = fence("after restart")
	if count(seen, "instance-restarted") != 1 || count(seen, "instance-shutdown") != 0 || count(seen, "instance-stopped") != 0 {
		t.Errorf("events of an API restart: %+v", seen)
	}
	in := instanceGet(t, d, "so-api")
	if in.Status != "Running" || in.Config["volatile.last_state.power"] != "RUNNING" {
		t.Errorf("after restart: status %s power %q", in.Status, in.Config["volatile.last_state.power"])
	}
	// A reboot from inside: liblxc runs the container again, the daemon
	// reports it and watches the new init.
	insideAsync(t, d, "so-api", "reboot", "-f")
	ev, seen := lifecycleOf(t, life, src, "instance-restarted", "instance-shutdown", "instance-stopped")
	if ev.Action != "instance-restarted" || ev.Requestor != nil {
		t.Errorf("reboot from inside reported as %+v (seen %+v)", ev, seen)
	}
	in = instanceGet(t, d, "so-api")
	if in.Status != "Running" || in.Config["volatile.last_state.power"] != "RUNNING" {
		t.Errorf("after a reboot from inside: status %s power %q", in.Status, in.Config["volatile.last_state.power"])
	}
	// The rebooted run is watched.
	insideAsync(t, d, "so-api", "poweroff", "-f")
	lifecycleOf(t, life, src, "instance-shutdown", "instance-stopped")
	requireStoppedOnItsOwn(t, d, "so-api")
}

// moatd stopping leaves containers running and unreported; the next moatd
// watches them again.
func TestSelfStopWatchedAfterDaemonRestart(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "so-keep", nil)
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "so-keep-eph", "source": map[string]string{"type": "image", "alias": "bb"}, "ephemeral": true, "start": true,
	}))
	d.Stop()
	d.Restart()
	for _, name := range []string{"so-keep", "so-keep-eph"} {
		in := instanceGet(t, d, name)
		if in.Status != "Running" || in.Config["volatile.last_state.power"] != "RUNNING" {
			t.Fatalf("%s after a moatd restart: status %s power %q", name, in.Status, in.Config["volatile.last_state.power"])
		}
	}
	life := dialEvents(t, d, "?type=lifecycle")
	insideAsync(t, d, "so-keep", "poweroff", "-f")
	lifecycleOf(t, life, "/1.0/instances/so-keep", "instance-shutdown", "instance-stopped")
	requireStoppedOnItsOwn(t, d, "so-keep")
	insideAsync(t, d, "so-keep-eph", "poweroff", "-f")
	lifecycleOf(t, life, "/1.0/instances/so-keep-eph", "instance-deleted")
	if res := d.Do("GET", "/1.0/instances/so-keep-eph", nil); res.Status != 404 {
		t.Errorf("re-adopted ephemeral instance after poweroff: %d", res.Status)
	}
}
