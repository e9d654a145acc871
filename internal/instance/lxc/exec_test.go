package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestExec(t *testing.T) {
	c := startTest(t, testSpec(t))

	code, out, errOut := run(t, c, "sh", "-c", "echo out; echo err >&2; exit 3")
	if code != 3 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("got %d %q %q", code, out, errOut)
	}

	// Only the given environment reaches the command (liblxc adds
	// container=lxc), nothing of the daemon's.
	os.Setenv("MOAT_LEAK_CHECK", "1")
	_, out, _ = run(t, c, "env")
	if !strings.Contains(out, "PATH=/usr/sbin") || strings.Contains(out, "MOAT_LEAK_CHECK") {
		t.Fatalf("environment: %q", out)
	}

	// uid, gid and cwd.
	outR, outW := pipe(t)
	p, err := c.Exec(ExecSpec{Command: []string{"sh", "-c", "id -u; id -g; pwd"}, UID: 1000, GID: 1001, Cwd: "/tmp", Stdout: outW})
	if err != nil {
		t.Fatal(err)
	}
	outW.Close()
	if code, err := p.Wait(); code != 0 || err != nil {
		t.Fatalf("exit %d %v", code, err)
	}
	b := make([]byte, 100)
	n, _ := outR.Read(b)
	if got := string(b[:n]); got != "1000\n1001\n/tmp\n" {
		t.Fatalf("id/cwd: %q", got)
	}

	// stdin is passed through.
	inR, inW := pipe(t)
	outR, outW = pipe(t)
	p, err = c.Exec(ExecSpec{Command: []string{"tr", "a-z", "A-Z"}, Stdin: inR, Stdout: outW})
	if err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	inW.WriteString("hello\n")
	inW.Close()
	n, _ = outR.Read(b)
	if code, err := p.Wait(); code != 0 || err != nil || string(b[:n]) != "HELLO\n" {
		t.Fatalf("stdin: %d %v %q", code, err, b[:n])
	}

	// A command that does not exist.
	if code, _, _ := run(t, c, "/nonexistent"); code == 0 {
		t.Fatal("missing command exited 0")
	}
}

func TestExecSignal(t *testing.T) {
	c := startTest(t, testSpec(t))
	p, err := c.Exec(ExecSpec{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.PID() <= 0 {
		t.Fatalf("pid %d", p.PID())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait()
	if err != nil || code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %d %v", code, err)
	}
	// Waiting again returns the same result.
	if again, _ := p.Wait(); again != code {
		t.Fatalf("second wait %d", again)
	}
}

func TestExecStopped(t *testing.T) {
	spec := testSpec(t)
	c, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ExecSpec{Command: []string{"true"}}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("exec in stopped container: %v", err)
	}
	if _, err := c.Exec(ExecSpec{}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("empty command: %v", err)
	}
}

// TestExecConcurrent: a long-running command does not hold up others, and
// many execs in parallel all get their own output and exit code.
func TestExecConcurrent(t *testing.T) {
	c := startTest(t, testSpec(t))
	long, err := c.Exec(ExecSpec{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, _ := run(t, c, "sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i))
			if code != i || out != fmt.Sprintf("%d\n", i) {
				t.Errorf("exec %d: exit %d out %q", i, code, out)
			}
		}()
	}
	wg.Wait()
	long.Signal(syscall.SIGKILL)
	if code, err := long.Wait(); code != 128+9 || err != nil {
		t.Fatalf("killed sleep: %d %v", code, err)
	}
}

// TestExecServerRestart: if the exec server dies, waiting callers get an
// error and the next Exec starts a new server.
func TestExecServerRestart(t *testing.T) {
	c := startTest(t, testSpec(t))
	p, err := c.Exec(ExecSpec{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := execServer()
	cl.cmd.Process.Kill()
	if _, err := p.Wait(); err == nil {
		t.Fatal("wait succeeded after the server died")
	}
	// The orphaned sleep is still in the container; stopping it cleans up.
	if code, out, _ := run(t, c, "echo", "again"); code != 0 || out != "again\n" {
		t.Fatalf("exec after restart: %d %q", code, out)
	}
}
