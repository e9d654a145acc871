package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// Stop stops the container. With force it is killed at once; otherwise
// init gets the halt signal and timeout to exit (timeout <= 0 waits
// forever). On timeout the container keeps running and the error says so,
// (ErrTimeout), as LXD does; the caller may then force. Either way, once it is stopped
// the cgroups liblxc leaves behind are removed.
func (c *Container) Stop(force bool, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.handle()
	if err != nil {
		return err
	}
	if !l.Running() {
		return ErrNotRunning
	}
	monitors := pidfds(c.cg.monitorPids(c.spec.Name))
	defer closeAll(monitors)

	if force {
		err = l.Stop()
	} else {
		err = c.shutdown(l, timeout)
	}
	if err != nil && l.Running() {
		return fmt.Errorf("stopping %s: %w", c.spec.Name, err)
	}
	c.forgetLive()
	// The monitor removes the payload cgroup and exits after reporting
	// STOPPED; only then can its own cgroup go.
	waitExit(monitors, 10*time.Second)
	return c.cg.removeLeftovers(c.spec.Name)
}

// ErrTimeout reports a clean stop that did not finish in time.
var ErrTimeout = errors.New("timed out waiting for the container to stop")

// shutdown sends init the halt signal and waits for it to exit. Init only
// receives signals it has a handler for (it is pid 1 of its namespace), and
// right after start it may not have installed one yet: while that is the
// case, the signal is re-sent as soon as a handler appears, so a stop that
// closely follows a start is still clean instead of running into timeout.
func (c *Container) shutdown(l *lxc.Container, timeout time.Duration) error {
	pidfd, err := l.InitPidFd()
	if err != nil {
		return err
	}
	defer pidfd.Close()
	pid := l.InitPid()
	sig := c.spec.HaltSignal
	if sig == 0 {
		sig = unix.SIGPWR
	}
	fd := int(pidfd.Fd())
	caught := catches(pid, sig)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		return err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		slice := -1 // block until init exits
		if !caught {
			slice = 5
		}
		if !deadline.IsZero() {
			left := int(time.Until(deadline).Milliseconds())
			if left <= 0 {
				return ErrTimeout
			}
			if slice < 0 || left < slice {
				slice = left
			}
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, slice)
		if err != nil && err != unix.EINTR {
			return err
		}
		if n > 0 {
			break
		}
		if !caught && catches(pid, sig) {
			caught = true
			if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
				return err
			}
		}
	}
	// Init is gone; the monitor reports STOPPED once it has cleaned up.
	wait := time.Duration(-1)
	if !deadline.IsZero() {
		wait = max(time.Until(deadline), time.Second)
	}
	if !l.Wait(lxc.STOPPED, wait) {
		return ErrTimeout
	}
	return nil
}

// catches reports whether pid has a handler installed for sig.
func catches(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

func pidfds(pids []int) []int {
	var fds []int
	for _, p := range pids {
		if fd, err := unix.PidfdOpen(p, 0); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// waitExit waits until every pidfd is readable, i.e. its process exited.
func waitExit(fds []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for _, fd := range fds {
		for {
			ms := int(time.Until(deadline).Milliseconds())
			if ms <= 0 {
				return
			}
			_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
			if err != unix.EINTR {
				break
			}
		}
	}
}
