package lxcdriver

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestPayloadPrefix(t *testing.T) {
	for _, tc := range []struct {
		path, want string
		ok         bool
	}{
		{"/lxc.payload.c1", "/lxc.payload.c1", true},
		{"/system.slice/lxc.payload.c1/init.scope", "/system.slice/lxc.payload.c1", true},
		{"/lxc.payload.c1-3/sub", "/lxc.payload.c1-3", true},
		{"/lxc.payload.c10", "", false}, // another container
		{"/lxc.payload.c1-x", "", false},
		{"/lxc.payload.c1-", "", false},
		{"/lxc.monitor.c1", "", false},
		{"/", "", false},
	} {
		got, ok := payloadPrefix(tc.path, "c1")
		if got != tc.want || ok != tc.ok {
			t.Errorf("payloadPrefix(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// TestStateCached: after the first State of a run, State answers from the
// cached pidfd and cgroup dirs; it must agree with liblxc through freeze,
// thaw, a stop and a container whose init exits on its own.
func TestStateCached(t *testing.T) {
	c := startTest(t, testSpec(t))
	first, err := c.State() // asks liblxc, learns the run, answers from it
	if err != nil || first.Status != StatusRunning {
		t.Fatalf("state %+v %v", first, err)
	}
	if c.live == nil {
		t.Fatal("nothing cached for a running container")
	}
	s, err := c.State()
	if err != nil || s.Status != StatusRunning || s.PID != first.PID || s.Processes < 1 || s.MemoryUsage <= 0 || s.CPUUsage <= 0 {
		t.Fatalf("cached state %+v %v (liblxc said %+v)", s, err, first)
	}
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.State(); s.Status != StatusFrozen || c.live == nil {
		t.Fatalf("frozen: %+v", s)
	}
	if err := c.Unfreeze(); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.State(); s.Status != StatusRunning {
		t.Fatalf("thawed: %+v", s)
	}
	if err := c.Stop(true, 0); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.State(); s.Status != StatusStopped || c.live != nil {
		t.Fatalf("after stop: %+v", s)
	}

	// Init killed from outside: the pidfd says so, and State asks liblxc.
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	s, _ = c.State()
	if s.Status != StatusRunning || c.live == nil {
		t.Fatalf("restarted: %+v", s)
	}
	if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, _ = c.State()
		if s.Status == StatusStopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %+v after init was killed", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStateKeepsUsageFilesOpen: the cached State reads its cgroup files
// through descriptors opened once per run, which must show fresh content
// on every read (a freeze is seen), and which a stop closes.
func TestStateKeepsUsageFilesOpen(t *testing.T) {
	c := startTest(t, testSpec(t))
	if _, err := c.State(); err != nil { // learns the run, opens the usage files
		t.Fatal(err)
	}
	if _, err := c.State(); err != nil { // reads them again
		t.Fatal(err)
	}
	opened := map[usageFile]int{}
	for k, fd := range c.live.fds {
		opened[k] = fd
	}
	if len(opened) < 3 {
		t.Fatalf("cached descriptors %v, want the freezer, pids, memory and cpu files", opened)
	}
	for k, fd := range opened {
		target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil || target != filepath.Join(k.dir, k.name) {
			t.Fatalf("fd %d is %q (%v), want %s", fd, target, err, filepath.Join(k.dir, k.name))
		}
	}
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	if s, err := c.State(); err != nil || s.Status != StatusFrozen {
		t.Fatalf("frozen container reads as %+v, %v through the open freezer file", s, err)
	}
	if !maps.Equal(c.live.fds, opened) {
		t.Fatalf("descriptors changed between reads: %v, then %v", opened, c.live.fds)
	}
	if err := c.Unfreeze(); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.State(); s.Status != StatusRunning || s.Processes < 1 || s.MemoryUsage <= 0 {
		t.Fatalf("thawed: %+v", s)
	}
	if err := c.Stop(true, 0); err != nil {
		t.Fatal(err)
	}
	for k, fd := range opened {
		if target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil && target == filepath.Join(k.dir, k.name) {
			t.Errorf("fd %d (%s) still open after the stop", fd, target)
		}
	}
}
