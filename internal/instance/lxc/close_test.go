package lxcdriver

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func execCode(t *testing.T, c *Container, cmd ...string) int {
	t.Helper()
	p, err := c.Exec(ExecSpec{Command: cmd})
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func stopProcess(pid int) error { return unix.Kill(pid, unix.SIGSTOP) }

func openFds(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestClosedHandleKeepsNothing: Close releases what a run cached (init's
// pidfd, the usage files, the netlink socket); a closed handle still
// answers State and exec for a caller that got it earlier, but keeps no
// descriptor afterwards, however often it is asked.
func TestClosedHandleKeepsNothing(t *testing.T) {
	c := startTest(t, testSpec(t))
	// The exec server's connection belongs to the process, not the handle:
	// open it before counting.
	execCode(t, c, "true")
	st, err := c.State()
	if err != nil || st.Status != StatusRunning || !st.Network["lo"].Up {
		t.Fatalf("state: %+v %v", st, err)
	}
	cached := openFds(t)
	c.Close()
	closed := openFds(t)
	if closed >= cached {
		t.Fatalf("Close released nothing: %d descriptors, %d before", closed, cached)
	}
	for range 10 {
		if st, err := c.State(); err != nil || st.Status != StatusRunning || !st.Network["lo"].Up {
			t.Fatalf("state of a closed handle: %+v %v", st, err)
		}
		if code := execCode(t, c, "true"); code != 0 {
			t.Fatalf("exec through a closed handle: %d", code)
		}
	}
	if n := openFds(t); n > closed {
		t.Fatalf("a closed handle kept %d descriptors after use (%d after Close)", n, closed)
	}
}

// TestCloseDuringCleanStop: closing a handle whose clean stop waits for
// init does not pull the liblxc object from under it: AbortStop still
// ends the stop, which then releases everything.
func TestCloseDuringCleanStop(t *testing.T) {
	c := startTest(t, testSpec(t))
	before := openFds(t)
	// An init that ignores the halt signal: from the host, stop it with
	// SIGSTOP so the clean stop waits for ever.
	st, _ := c.State()
	if err := stopProcess(st.PID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Stop(false, 0) }()
	for !c.abort.waiting() {
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	if !c.AbortStop() {
		t.Fatal("AbortStop found no waiting clean stop")
	}
	select {
	case err := <-done:
		if err != ErrStopForced {
			t.Fatalf("the cut-short stop: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the clean stop did not end after AbortStop")
	}
	if s, err := c.State(); err != nil || s.Status != StatusStopped {
		t.Fatalf("after the stop: %+v %v", s, err)
	}
	if n := openFds(t); n > before {
		t.Fatalf("%d descriptors left after the stop of a closed handle (%d before)", n, before)
	}
}
