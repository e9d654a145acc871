package lxcdriver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExec(t *testing.T) {
	c := startTest(t, testSpec(t))

	code, out, errOut := run(t, c, "sh", "-c", "echo out; echo err >&2; exit 3")
	if code != 3 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("got %d %q %q", code, out, errOut)
	}

	// Exactly the given environment reaches the command, nothing of the
	// daemon's.
	os.Setenv("MOAT_LEAK_CHECK", "1")
	_, out, _ = run(t, c, "env")
	if out != "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n" {
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
	if _, err := c.Exec(ExecSpec{Command: []string{"echo", "a\x00b"}}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("NUL in an argument: %v", err)
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
		wg.Add(2)
		go func() {
			defer wg.Done()
			code, out, _ := run(t, c, "sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i))
			if code != i || out != fmt.Sprintf("%d\n", i) {
				t.Errorf("exec %d: exit %d out %q", i, code, out)
			}
		}()
		// Terminals too: each command's master reaches its own caller.
		go func() {
			defer wg.Done()
			p, err := c.Exec(ExecSpec{Command: []string{"sh", "-c", fmt.Sprintf("echo t%d; exit %d", i, i)}, Terminal: true})
			if err != nil {
				t.Error(err)
				return
			}
			defer p.Terminal().Close()
			b, _ := io.ReadAll(p.Terminal()) // ends with EIO once the command is gone
			if code, err := p.Wait(); code != i || err != nil || string(b) != fmt.Sprintf("t%d\r\n", i) {
				t.Errorf("terminal exec %d: exit %d %v out %q", i, code, err, b)
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

// procFields reads "Key:\tvalue" lines of /proc/PID/status.
func procFields(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestExecConfinement: an exec'd process is confined exactly like the
// container's init (namespaces, cgroups, bounding set) plus the seccomp
// filter, and inherits no fd of the daemon or the exec server. Checked
// from the host on a sleeping command, for both container kinds.
func TestExecConfinement(t *testing.T) {
	for _, privileged := range []bool{false, true} {
		t.Run(fmt.Sprintf("privileged=%v", privileged), func(t *testing.T) {
			spec := testSpec(t)
			if privileged {
				spec.Privileged, spec.IDMap = true, nil
			}
			c := startTest(t, spec)
			st, err := c.State()
			if err != nil || st.PID <= 0 {
				t.Fatalf("state %+v %v", st, err)
			}
			p, err := c.Exec(ExecSpec{Command: []string{"sleep", "1000"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Signal(syscall.SIGKILL); p.Wait() })
			for _, ns := range []string{"user", "mnt", "pid", "uts", "ipc", "net", "cgroup"} {
				want, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", st.PID, ns))
				got, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", p.PID(), ns))
				if err1 != nil || err2 != nil || got != want {
					t.Errorf("%s namespace: exec'd %s, init %s (%v %v)", ns, got, want, err1, err2)
				}
			}
			if host, _ := os.Readlink("/proc/self/ns/user"); privileged {
				if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", p.PID())); got != host {
					t.Errorf("privileged exec in user namespace %s, host's is %s", got, host)
				}
			}
			initCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.PID))
			execCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID()))
			if len(initCg) == 0 || string(initCg) != string(execCg) {
				t.Errorf("cgroups: exec'd\n%s\ninit\n%s", execCg, initCg)
			}
			initSt, execSt := procFields(t, st.PID), procFields(t, p.PID())
			if execSt["CapBnd"] == "" || execSt["CapBnd"] != initSt["CapBnd"] {
				t.Errorf("CapBnd: exec'd %s, init %s", execSt["CapBnd"], initSt["CapBnd"])
			}
			if execSt["Seccomp"] != "2" || initSt["Seccomp"] != "2" {
				t.Errorf("Seccomp: exec'd %s, init %s", execSt["Seccomp"], initSt["Seccomp"])
			}
			// A command that is not the container's init: its own pid inside.
			if nspid := strings.Fields(execSt["NSpid"]); len(nspid) != 2 || nspid[1] == "1" {
				t.Errorf("NSpid %q", execSt["NSpid"])
			}
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.PID()))
			var names []string
			for _, f := range fds {
				names = append(names, f.Name())
			}
			if err != nil || strings.Join(names, " ") != "0 1 2" {
				t.Errorf("open fds of the exec'd process: %v %v", names, err)
			}

			// The same seen from inside.
			code, out, errOut := run(t, c, "sh", "-c", `for n in user mnt pid uts ipc net cgroup; do
				[ "$(readlink /proc/self/ns/$n)" = "$(readlink /proc/1/ns/$n)" ] || echo "ns $n differs"; done
				[ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] || echo cgroup differs
				grep -q '^Seccomp:.2' /proc/self/status || echo no seccomp
				echo fds $(ls /proc/self/fd)`)
			if code != 0 || out != "fds 0 1 2 3\n" {
				t.Errorf("inside: exit %d %q %q", code, out, errOut)
			}
		})
	}
}

// TestExecUser: a non-root command has no effective capabilities and runs
// with the container's ids mapped to the host.
func TestExecUser(t *testing.T) {
	spec := testSpec(t)
	c := startTest(t, spec)
	p, err := c.Exec(ExecSpec{Command: []string{"sleep", "1000"}, UID: 1000, GID: 1001, Cwd: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Signal(syscall.SIGKILL); p.Wait() }()
	st := procFields(t, p.PID())
	hostUID, _ := spec.IDMap.HostID(true, 1000)
	hostGID, _ := spec.IDMap.HostID(false, 1001)
	if st["CapEff"] != "0000000000000000" || st["CapPrm"] != "0000000000000000" {
		t.Errorf("non-root caps: eff %s prm %s", st["CapEff"], st["CapPrm"])
	}
	if st["Uid"] != strings.Repeat(fmt.Sprint(hostUID)+"\t", 3)+fmt.Sprint(hostUID) ||
		st["Gid"] != strings.Repeat(fmt.Sprint(hostGID)+"\t", 3)+fmt.Sprint(hostGID) || st["Groups"] != "" {
		t.Errorf("ids: Uid %q Gid %q Groups %q", st["Uid"], st["Gid"], st["Groups"])
	}
	// Root in the container keeps the bounding set as effective set.
	code, out, _ := run(t, c, "sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status | cut -f2 | uniq | wc -l")
	if code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("root: CapEff differs from CapBnd (%d %q)", code, out)
	}
}

// TestExecErrors: a missing cwd is an error of Exec, not an exit code; a
// missing command exits 127 as in a shell; death by signal is 128+N.
func TestExecErrors(t *testing.T) {
	c := startTest(t, testSpec(t))
	_, err := c.Exec(ExecSpec{Command: []string{"true"}, Cwd: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), "working directory") || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("missing cwd: %v", err)
	}
	if code, _, errOut := run(t, c, "no-such-command"); code != 127 || !strings.Contains(errOut, "not found") {
		t.Fatalf("missing command: %d %q", code, errOut)
	}
	if code, _, _ := run(t, c, "sh", "-c", "kill -KILL $$"); code != 128+9 {
		t.Fatalf("killed: %d", code)
	}
	// The server survives all of it.
	if code, out, _ := run(t, c, "echo", "ok"); code != 0 || out != "ok\n" {
		t.Fatalf("after errors: %d %q", code, out)
	}
}

// TestExecTerminal: the command's terminal is a pty of the container's
// own devpts, its controlling terminal, with the requested size, and the
// size set later on the master is what the command sees.
func TestExecTerminal(t *testing.T) {
	c := startTest(t, testSpec(t))
	p, err := c.Exec(ExecSpec{
		Command: []string{"sh", "-c", "tty; stty size; ls /dev/pts; read x; stty size; exit 5"},
		Env:     []string{"PATH=/bin:/sbin"}, Terminal: true, Rows: 24, Cols: 80,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := p.Terminal()
	if m == nil {
		t.Fatal("no terminal")
	}
	defer m.Close()
	var out strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(out.String(), "80\r\n") || !strings.Contains(out.String(), "ptmx") {
		n, err := m.Read(buf)
		if err != nil {
			t.Fatalf("read %v after %q", err, out.String())
		}
		out.Write(buf[:n])
	}
	first := out.String()
	lines := strings.Split(strings.TrimSpace(first), "\r\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "/dev/pts/") || lines[1] != "24 80" {
		t.Fatalf("terminal: %q", first)
	}
	// The pts named by tty exists in the container's own /dev/pts.
	if pts := strings.TrimPrefix(lines[0], "/dev/pts/"); !strings.Contains(" "+strings.Join(strings.Fields(strings.Join(lines[2:], " ")), " ")+" ", " "+pts+" ") {
		t.Fatalf("pts %s not in the container's /dev/pts: %q", pts, first)
	}
	if err := unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100}); err != nil {
		t.Fatal(err)
	}
	m.Write([]byte("\n"))
	out.Reset()
	for {
		n, err := m.Read(buf)
		out.Write(buf[:n])
		if err != nil { // EIO once the command is gone
			break
		}
	}
	if !strings.Contains(out.String(), "40 100") {
		t.Fatalf("after resize: %q", out.String())
	}
	if code, err := p.Wait(); code != 5 || err != nil {
		t.Fatalf("exit %d %v", code, err)
	}
}

// TestExecServerFds: the server keeps no fd of a finished exec, whether
// it succeeded, failed or had a terminal.
func TestExecServerFds(t *testing.T) {
	c := startTest(t, testSpec(t))
	run(t, c, "true") // the server runs
	cl, err := execServer()
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cl.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(fds)
	}
	before := count()
	for range 5 {
		run(t, c, "true")
		if _, err := c.Exec(ExecSpec{Command: []string{"true"}, Cwd: "/nonexistent"}); err == nil {
			t.Fatal("missing cwd accepted")
		}
		p, err := c.Exec(ExecSpec{Command: []string{"true"}, Terminal: true})
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(p.Terminal())
		p.Terminal().Close()
		p.Wait()
	}
	if after := count(); after != before {
		t.Fatalf("server fds: %d before, %d after", before, after)
	}
}

// TestExecStalledAttach: an attach that cannot finish (here: its first
// child froze on joining a frozen container's cgroups) holds up no other
// exec, and completes once the container thaws.
func TestExecStalledAttach(t *testing.T) {
	frozen, other := startTest(t, testSpec(t)), startTest(t, testSpec(t))
	if _, err := frozen.State(); err != nil { // learn the cgroup dirs
		t.Fatal(err)
	}
	frozen.mu.Lock()
	procs := filepath.Join(frozen.live.dir(frozen.cg, "freezer"), "cgroup.procs")
	frozen.mu.Unlock()
	tasks := func() int {
		b, err := os.ReadFile(procs)
		if err != nil {
			t.Fatal(err)
		}
		return len(strings.Fields(string(b)))
	}
	if err := frozen.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { frozen.Unfreeze() }) // runs before the stop; harmless when thawed
	before := tasks()
	done := make(chan error, 1)
	go func() {
		p, err := frozen.Exec(ExecSpec{Command: []string{"true"}})
		if err == nil {
			_, err = p.Wait()
		}
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for tasks() == before {
		if time.Now().After(deadline) {
			t.Fatal("the attaching process never joined the frozen cgroup")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, out, _ := run(t, other, "echo", "ok"); code != 0 || out != "ok\n" {
		t.Fatalf("exec beside a stalled one: %d %q", code, out)
	}
	select {
	case err := <-done:
		t.Fatalf("exec into a frozen container finished: %v", err)
	default:
	}
	if err := frozen.Unfreeze(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("exec after thawing: %v", err)
	}
}
