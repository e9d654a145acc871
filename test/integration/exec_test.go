package integration

import (
	"regexp"
	"strings"
	"testing"
)

// confinementScript prints one line per way an exec'd process differs
// from the container's init, then the fds it has open (ls adds one).
const confinementScript = `for n in user mnt pid uts ipc net cgroup; do
	[ "$(readlink /proc/self/ns/$n)" = "$(readlink /proc/1/ns/$n)" ] || echo "ns $n differs"; done
[ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] || echo cgroup differs
[ "$(grep CapBnd /proc/self/status)" = "$(grep CapBnd /proc/1/status)" ] || echo CapBnd differs
grep -q '^Seccomp:.2' /proc/self/status || echo no seccomp
echo fds $(ls /proc/self/fd)`

// TestExecConfinement: through the API, an exec'd process shares init's
// namespaces, cgroups and bounding set, is under seccomp and holds no fd
// of the daemon, in unprivileged and privileged containers.
func TestExecConfinement(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "u1", nil)
	launch(t, d, "p1", map[string]string{"security.privileged": "true"})
	for _, name := range []string{"u1", "p1"} {
		if code, out := execOut(t, d, name, "sh", "-c", confinementScript); code != 0 || out != "fds 0 1 2 3\n" {
			t.Errorf("%s: exit %d, %q", name, code, out)
		}
	}

	// NUL bytes would cut C strings short: refused, naming the field.
	for field, body := range map[string]map[string]any{
		"command":     {"command": []string{"echo", "a\x00b"}},
		"cwd":         {"command": []string{"true"}, "cwd": "/tmp\x00x"},
		"environment": {"command": []string{"true"}, "environment": map[string]string{"X": "a\x00b"}},
	} {
		if res := d.Do("POST", "/1.0/instances/u1/exec", body); res.Status != 400 || !strings.Contains(strings.ToLower(string(res.Raw)), field) {
			t.Errorf("NUL in %s: %d %s", field, res.Status, res.Raw)
		}
	}

	// A missing cwd fails the operation; a missing command exits 127.
	op := wait(t, d, d.Do("POST", "/1.0/instances/u1/exec", map[string]any{"command": []string{"true"}, "cwd": "/nonexistent"}))
	if op.Status != "Failure" || !strings.Contains(op.Err, "working directory") {
		t.Errorf("missing cwd: %s %q", op.Status, op.Err)
	}
	if code, _ := execOut(t, d, "u1", "no-such-command"); code != 127 {
		t.Errorf("missing command: exit %d", code)
	}
}

// TestLXCExecTerminal: with the real lxc client, -t gives the command a
// terminal of the container (tty names its /dev/pts entry), -T none, and
// exit codes come back either way.
func TestLXCExecTerminal(t *testing.T) {
	lxc := lxcLaunched(t)

	out := lxc.run("exec", "-t", "c1", "--", "sh", "-c", "tty; ls /dev/pts")
	m := regexp.MustCompile(`^/dev/pts/(\d+)\r?\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(" "+strings.Join(strings.Fields(out), " ")+" ", " "+m[1]+" ") {
		t.Fatalf("lxc exec -t tty: %q", out)
	}
	c := lxc.cmd("exec", "-T", "c1", "--", "tty")
	b, err := c.CombinedOutput()
	if err == nil || c.ProcessState.ExitCode() != 1 || !strings.Contains(string(b), "not a tty") {
		t.Fatalf("lxc exec -T tty: %v %q", err, b)
	}
	c = lxc.cmd("exec", "-t", "c1", "--", "sh", "-c", "exit 3")
	if err := c.Run(); err == nil || c.ProcessState.ExitCode() != 3 {
		t.Fatalf("lxc exec -t exit code: %v", err)
	}
}
