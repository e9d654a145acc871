package integration

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/internal/testdaemon"
)

// lxcClient runs Debian's lxd-client (LXD 5.0.2) against a moatd.
type lxcClient struct {
	t    *testing.T
	d    *testdaemon.Daemon
	conf string
}

func newLXC(t *testing.T, d *testdaemon.Daemon) *lxcClient {
	t.Helper()
	if _, err := exec.LookPath("lxc"); err != nil {
		t.Fatalf("the lxc client (Debian lxd-client) is required: %v", err)
	}
	return &lxcClient{t: t, d: d, conf: t.TempDir()}
}

func (l *lxcClient) cmd(args ...string) *exec.Cmd {
	c := exec.Command("lxc", args...)
	c.Env = append(os.Environ(), "LXD_DIR="+l.d.Dir, "LXD_CONF="+l.conf)
	return c
}

// run runs lxc and fails the test if it fails.
func (l *lxcClient) run(args ...string) string {
	l.t.Helper()
	out, err := l.cmd(args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("lxc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestLXCClientFoundation(t *testing.T) {
	d := testdaemon.Start(t)
	lxc := newLXC(t, d)

	if out := lxc.run("info"); !strings.Contains(out, "auth: trusted") || !strings.Contains(out, "server: moat") {
		t.Fatalf("lxc info:\n%s", out)
	}

	lxc.run("config", "set", "user.x", "y")
	if out := lxc.run("config", "get", "user.x"); strings.TrimSpace(out) != "y" {
		t.Fatalf("lxc config get user.x = %q", out)
	}
	out, err := lxc.cmd("config", "set", "core.bogus", "1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "core.bogus") {
		t.Fatalf("lxc config set of an unknown key: err=%v out=%s", err, out)
	}

	// lxc monitor streams the lifecycle event of a project created later.
	mon := lxc.cmd("monitor", "--type=lifecycle")
	stdout, _ := mon.StdoutPipe()
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mon.Process.Kill(); _ = mon.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The monitor subscribes asynchronously: create projects until one of
	// their events shows up (bounded).
	created := false
	deadline := time.After(10 * time.Second)
	for i := 0; !created; i++ {
		name := "p" + string(rune('a'+i))
		lxc.run("project", "create", name)
		timer := time.After(300 * time.Millisecond)
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatal("lxc monitor exited")
				}
				if strings.Contains(line, "action: project-created") {
					created = true
					break read
				}
			case <-timer:
				break read
			case <-deadline:
				t.Fatal("lxc monitor showed no project-created event in 10s")
			}
		}
	}

	if out := lxc.run("project", "list"); !strings.Contains(out, "pa") || !strings.Contains(out, "default (current)") {
		t.Fatalf("lxc project list:\n%s", out)
	}
	if out := lxc.run("operation", "list"); !strings.Contains(out, "CANCELABLE") {
		t.Fatalf("lxc operation list:\n%s", out)
	}
	lxc.run("project", "rename", "pa", "renamed")
	lxc.run("project", "delete", "renamed")
	if out := lxc.run("project", "list", "--format=csv"); strings.Contains(out, "renamed") {
		t.Fatalf("deleted project still listed:\n%s", out)
	}
}
