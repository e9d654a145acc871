package lxcdriver

import (
	"fmt"
	"os"
	"time"

	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// InitPidfd returns a new pidfd of the running container's init, owned by
// the caller, and init's pid. It is opened non-blocking, so os.NewFile puts it in the Go
// runtime's poller: waiting for init to exit (the pidfd turns readable)
// then parks a goroutine instead of an OS thread.
func (c *Container) InitPidfd() (*os.File, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.dropIfClosed()
	l, err := c.handle()
	if err != nil {
		return nil, 0, err
	}
	// The monitor's pidfd pins init; the pid is read after it, so if init
	// still lives once our own pidfd is open, both name the same process.
	pinned, err := l.InitPidFd()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer pinned.Close()
	pid := l.InitPid()
	if pid <= 0 {
		return nil, 0, ErrNotRunning
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	if exited(int(pinned.Fd())) {
		unix.Close(fd)
		return nil, 0, ErrNotRunning
	}
	return os.NewFile(uintptr(fd), "pidfd"), pid, nil
}

// exited reports whether the process of a pidfd has exited.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err != unix.EINTR {
			return err == nil && n > 0
		}
	}
}

// WaitExited parks the calling goroutine until the process of a pidfd
// from InitPidfd exits (nil) or the pidfd is closed (an error): closing it
// is how a waiter is called off.
func WaitExited(pidfd *os.File) error {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool { return exited(int(fd)) })
}

// fileExited is exited for a pidfd from InitPidfd.
func fileExited(pidfd *os.File) bool {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return false
	}
	var done bool
	if err := rc.Control(func(fd uintptr) { done = exited(int(fd)) }); err != nil {
		return false
	}
	return done
}

// Ending is how a container's init ended, as far as the host can tell.
//
// The kernel keeps the exit status of init's own task for pidfd holders
// (PIDFD_INFO_EXIT, Linux 6.15), not the one its parent, the monitor,
// reaps. They differ when a process other than init calls reboot(2)
// ("poweroff -f" from a shell): the kernel kills init with SIGKILL and
// only the reaped status says halt. Such a forced poweroff therefore looks
// like a kill from the host and ends as EndKilled; an orderly shutdown,
// where init itself halts or exits, ends as EndHalt.
type Ending int

const (
	// EndUnknown: the exit status could not be read (kernels before
	// 6.15).
	EndUnknown Ending = iota
	// EndHalt: init exited with status 0, or halted or powered the
	// container off itself (reboot(2) in a pid namespace then ends its
	// init with SIGINT).
	EndHalt
	// EndReboot: init rebooted the container (SIGHUP); liblxc starts it
	// again.
	EndReboot
	// EndKilled: init was killed by a signal or exited with a failure.
	EndKilled
)

// Clean reports whether the container shut itself down in an orderly way.
func (e Ending) Clean() bool { return e == EndHalt || e == EndReboot }

// ending reads init's exit status through its pidfd. The kernel records it
// when init is reaped (by the monitor), which the caller has waited for.
func ending(pidfd *os.File) Ending {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return EndUnknown
	}
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlPidfdInfo(int(fd), &info) }); err != nil || ierr != nil {
		return EndUnknown
	}
	if info.Mask&unix.PIDFD_INFO_EXIT == 0 {
		return EndUnknown
	}
	ws := unix.WaitStatus(info.Exit_code)
	switch {
	case ws.Exited() && ws.ExitStatus() == 0, ws.Signaled() && ws.Signal() == unix.SIGINT:
		return EndHalt
	case ws.Signaled() && ws.Signal() == unix.SIGHUP:
		return EndReboot
	}
	return EndKilled
}

// AfterExit is the outcome of Settle.
type AfterExit struct {
	Ending Ending
	// Running: liblxc started the container again (a reboot from
	// inside); it has a new init to watch.
	Running bool
}

// settleLimit bounds how long Settle waits for the monitor: it removes the
// payload cgroup and exits right after init does.
const settleLimit = 10 * time.Second

// Settle finishes a run whose init (pidfd and pid, from InitPidfd; pidfd
// may be nil if init was gone before it could be opened) exited without
// Stop: it waits for the monitor to clean up and exit, then removes the
// cgroups liblxc leaves behind and drops the cached run information, as
// Stop does. When the monitor starts the container again instead (a reboot
// from inside), it returns once the new init runs, with Running set.
func (c *Container) Settle(pidfd *os.File, old int) (AfterExit, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.dropIfClosed()
	c.forgetLive()
	l, err := c.handle()
	if err != nil {
		return AfterExit{}, err
	}
	monitors := pidfds(c.cg.monitorPids(c.spec.Name))
	defer closeAll(monitors)
	deadline := time.Now().Add(settleLimit)
	for time.Now().Before(deadline) {
		// Between slices: has the monitor brought up a new init?
		if l.State() == lxc.RUNNING {
			if pid := l.InitPid(); pid > 0 && pid != old && (pidfd == nil || fileExited(pidfd)) {
				return AfterExit{Ending: c.endingOf(pidfd), Running: true}, nil
			}
		}
		if allExited(monitors) {
			break
		}
		waitExit(monitors, 50*time.Millisecond)
	}
	if !allExited(monitors) {
		return AfterExit{}, fmt.Errorf("the monitor of %s did not exit within %s after init", c.spec.Name, settleLimit)
	}
	// A monitor gone means the run is over; reload the handle, as after
	// Stop, so the next start sees a fresh config.
	c.release()
	return AfterExit{Ending: c.endingOf(pidfd)}, c.cg.removeLeftovers(c.spec.Name)
}

func (c *Container) endingOf(pidfd *os.File) Ending {
	if pidfd == nil {
		return EndUnknown
	}
	return ending(pidfd)
}

func allExited(fds []int) bool {
	for _, fd := range fds {
		if !exited(fd) {
			return false
		}
	}
	return true
}
