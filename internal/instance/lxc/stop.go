package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// Stop stops the container. With force it is killed at once; otherwise
// init gets the halt signal and timeout to exit (timeout <= 0 waits
// forever). On timeout the container keeps running and the error says so
// (ErrTimeout), as LXD does; the caller may then force. A frozen container
// is thawed first, since a frozen init cannot handle the signal. Either
// way, once it is stopped the cgroups liblxc leaves behind are removed.
//
// While a clean stop waits for init, the container's lock is released:
// the wait may be long (or, with no timeout, endless) and State, exec and
// AbortStop must not queue behind it. AbortStop turns the wait into a
// kill; Stop then returns ErrStopForced once the container is stopped.
func (c *Container) Stop(force bool, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.dropIfClosed()
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
		err = c.kill(l)
	} else {
		err = c.shutdown(l, timeout)
	}
	if err != nil && !errors.Is(err, ErrStopForced) && l.Running() {
		return fmt.Errorf("stopping %s: %w", c.spec.Name, err)
	}
	c.forgetLive()
	// The monitor removes the payload cgroup and exits after reporting
	// STOPPED; only then can its own cgroup go.
	waitExit(monitors, 10*time.Second)
	if rerr := c.cg.removeLeftovers(c.spec.Name); rerr != nil {
		return rerr
	}
	return err
}

// kill stops the container at once. Killed tasks of a frozen cgroup do
// not die until thawed, so it is thawed after the kill (not before, which
// would let it run again for a moment).
func (c *Container) kill(l *lxc.Container) error {
	frozen := l.State() == lxc.FROZEN || l.State() == lxc.FREEZING
	err := l.Stop()
	if frozen {
		_ = l.Unfreeze()
	}
	return err
}

var (
	// ErrTimeout reports a clean stop that did not finish in time.
	ErrTimeout = errors.New("timed out waiting for the container to stop")
	// ErrStopForced reports a clean stop that AbortStop cut short: the
	// container was killed and is stopped.
	ErrStopForced = errors.New("the clean stop was cut short by a forced stop")
)

// stopAbort is how a forced stop reaches a clean one waiting for init: an
// eventfd in the wait's poll set, present only while a clean stop waits.
type stopAbort struct {
	mu    sync.Mutex
	fd    int // valid while armed
	armed bool
}

// ErrStopping reports a clean stop asked for while another one waits.
var ErrStopping = errors.New("a clean stop of the container is already in progress")

func (a *stopAbort) arm() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.armed {
		return -1, ErrStopping
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, err
	}
	a.fd, a.armed = fd, true
	return fd, nil
}

// waiting reports whether a clean stop is waiting for init.
func (a *stopAbort) waiting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.armed
}

func (a *stopAbort) disarm() {
	a.mu.Lock()
	if a.armed {
		unix.Close(a.fd)
		a.armed = false
	}
	a.mu.Unlock()
}

// AbortStop cuts short a clean stop of this container that is waiting
// for init, making it kill the container instead. It reports whether one
// was waiting. It never blocks on the container's lock.
func (c *Container) AbortStop() bool {
	a := &c.abort
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.armed {
		return false
	}
	one := [8]byte{1}
	_, _ = unix.Write(a.fd, one[:])
	return true
}

// shutdown sends init the halt signal and waits for it to exit, with c.mu
// released during the wait (the caller holds it on entry and gets it back).
// Nothing that runs meanwhile replaces l: Start refuses a running
// container, and Settle runs only after the daemon's own stop is done. A
// forced Stop meanwhile kills init itself, which ends the wait.
// Init only receives signals it has a handler for (it is pid 1 of its
// namespace), and right after start it may not have installed one yet:
// while that is the case, the signal is re-sent as soon as a handler
// appears, so a stop that closely follows a start is still clean instead of
// running into timeout.
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
	if st := l.State(); st == lxc.FROZEN || st == lxc.FREEZING {
		if err := l.Unfreeze(); err != nil {
			return fmt.Errorf("thawing before the clean stop: %w", err)
		}
	}
	abort, err := c.abort.arm()
	if err != nil {
		return err
	}
	defer c.abort.disarm()
	fd := int(pidfd.Fd())
	caught := catches(pid, sig)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		return err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	c.mu.Unlock()
	aborted, err := waitInit(fd, abort, pid, sig, caught, deadline)
	c.mu.Lock()
	if aborted {
		if err := c.kill(l); err != nil && l.Running() {
			return err
		}
		if !l.Wait(lxc.STOPPED, 10*time.Second) {
			return fmt.Errorf("killed, but not stopped within 10s")
		}
		return ErrStopForced
	}
	if err != nil {
		return err
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

// waitInit waits until init (pidfd) exits, the abort eventfd fires, or the
// deadline (zero: none) passes; until init catches sig, it re-sends sig as
// soon as a handler appears. It touches no liblxc state, so it runs
// without the container's lock.
func waitInit(pidfd, abort, pid int, sig unix.Signal, caught bool, deadline time.Time) (aborted bool, err error) {
	for {
		slice := -1 // block until init exits or the stop is aborted
		if !caught {
			slice = 5
		}
		if !deadline.IsZero() {
			left := int(time.Until(deadline).Milliseconds())
			if left <= 0 {
				return false, ErrTimeout
			}
			if slice < 0 || left < slice {
				slice = left
			}
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}, {Fd: int32(abort), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, slice)
		if err != nil && err != unix.EINTR {
			return false, err
		}
		if fds[1].Revents&unix.POLLIN != 0 {
			return true, nil
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			return false, nil
		}
		if !caught && catches(pid, sig) {
			caught = true
			if err := unix.PidfdSendSignal(pidfd, sig, nil, 0); err != nil {
				return false, err
			}
		}
	}
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
