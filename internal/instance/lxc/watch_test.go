package lxcdriver

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// watchInit opens init's pidfd and returns a channel closed once init
// exits.
func watchInit(t *testing.T, c *Container) (*Container, func() (AfterExit, error), <-chan error) {
	t.Helper()
	f, pid, err := c.InitPidfd()
	if err != nil {
		t.Fatalf("InitPidfd: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	if st, _ := c.State(); st.PID != pid {
		t.Fatalf("InitPidfd pid %d, State pid %d", pid, st.PID)
	}
	done := make(chan error, 1)
	go func() { done <- WaitExited(f) }()
	return c, func() (AfterExit, error) { return c.Settle(f, pid) }, done
}

func waitDone(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitExited: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("init's exit was not noticed")
	}
}

func exitInfoSupported() bool {
	fd, err := unix.PidfdOpen(unix.Getpid(), 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	// A running process: the kernel knows the request (no EINVAL/ENOTTY)
	// but has no exit status yet.
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT | unix.PIDFD_INFO_PID}
	return unix.IoctlPidfdInfo(fd, &info) == nil && info.Mask&unix.PIDFD_INFO_PID != 0 && kernelAtLeast(6, 15)
}

func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	for i, part := 0, 0; i < len(u.Release) && part < 2; i++ {
		b := u.Release[i]
		switch {
		case b >= '0' && b <= '9' && part == 0:
			ma = ma*10 + int(b-'0')
		case b >= '0' && b <= '9':
			mi = mi*10 + int(b-'0')
		case b == '.':
			part++
		default:
			part = 2
		}
	}
	return ma > major || (ma == major && mi >= minor)
}

func TestSettleAfterPoweroff(t *testing.T) {
	spec := testSpec(t)
	c := startTest(t, spec)
	_, settle, done := watchInit(t, c)
	// The exec dies with the container; its outcome does not matter.
	p, err := c.Exec(ExecSpec{Command: []string{"/sbin/poweroff", "-f"}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	p.Wait()
	res, err := settle()
	if err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if res.Running {
		t.Fatal("a powered-off container reported running again")
	}
	// A forced poweroff from a shell is indistinguishable from a kill
	// (see Ending); only the settling is checked here.
	if left := leftovers(c.cg, spec.Name); len(left) > 0 {
		t.Errorf("cgroups left after Settle: %v", left)
	}
	if st, _ := c.State(); st.Status != StatusStopped {
		t.Errorf("state after Settle: %+v", st)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("start after a poweroff: %v", err)
	}
}

// Init exiting by itself (the image's init exits 0 on SIGTERM) is an
// orderly shutdown.
func TestSettleAfterCleanExit(t *testing.T) {
	spec := testSpec(t)
	c := startTest(t, spec)
	_, settle, done := watchInit(t, c)
	p, err := c.Exec(ExecSpec{Command: []string{"/bin/kill", "-TERM", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	p.Wait()
	res, err := settle()
	if err != nil || res.Running {
		t.Fatalf("Settle: %+v %v", res, err)
	}
	if exitInfoSupported() && res.Ending != EndHalt {
		t.Errorf("init exiting 0 ended as %v, want EndHalt", res.Ending)
	}
	if left := leftovers(c.cg, spec.Name); len(left) > 0 {
		t.Errorf("cgroups left after Settle: %v", left)
	}
}

func TestSettleAfterKill(t *testing.T) {
	spec := testSpec(t)
	c := startTest(t, spec)
	f, pid, err := c.InitPidfd()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- WaitExited(f) }()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	res, err := c.Settle(f, pid)
	if err != nil || res.Running {
		t.Fatalf("Settle: %+v %v", res, err)
	}
	if res.Ending.Clean() {
		t.Errorf("kill -9 of init ended as %v, a clean shutdown", res.Ending)
	}
	if exitInfoSupported() && res.Ending != EndKilled {
		t.Errorf("kill -9 ended as %v, want EndKilled", res.Ending)
	}
	if left := leftovers(c.cg, spec.Name); len(left) > 0 {
		t.Errorf("cgroups left after Settle: %v", left)
	}
	if _, _, err := c.InitPidfd(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("InitPidfd of a stopped container: %v", err)
	}
}

func TestWaitExitedCalledOffByClose(t *testing.T) {
	c := startTest(t, testSpec(t))
	f, _, err := c.InitPidfd()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- WaitExited(f) }()
	f.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a closed pidfd reported init's exit")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("closing the pidfd did not call the wait off")
	}
	if st, _ := c.State(); st.Status != StatusRunning {
		t.Fatalf("container after calling the wait off: %+v", st)
	}
}

// A reboot from inside is restarted by the monitor: Settle hands back a
// running container with a new init.
func TestSettleAfterReboot(t *testing.T) {
	spec := testSpec(t)
	c := startTest(t, spec)
	_, settle, done := watchInit(t, c)
	old, _ := c.State()
	p, err := c.Exec(ExecSpec{Command: []string{"/sbin/reboot", "-f"}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	p.Wait()
	res, err := settle()
	if err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if !res.Running {
		t.Fatalf("rebooted container reported stopped: %+v", res)
	}
	st, _ := c.State()
	if st.Status != StatusRunning || st.PID == old.PID {
		t.Fatalf("after reboot: %+v (init was %d)", st, old.PID)
	}
	f, pid, err := c.InitPidfd()
	if err != nil || pid != st.PID {
		t.Fatalf("the new init cannot be watched: pid %d %v", pid, err)
	}
	f.Close()
}
