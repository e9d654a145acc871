package lxcdriver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// Container is the driver's handle on one container. It is safe for
// concurrent use; operations on one container are serialised.
type Container struct {
	spec Spec
	cg   *cgroups

	mu  sync.Mutex
	lxc *lxc.Container // loaded from the config written by the last Start
}

// New validates spec and returns a handle. It does no I/O beyond reading
// the host's cgroup layout; the config dir is written by Start.
func New(spec Spec) (*Container, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	cg, err := hostCgroups()
	if err != nil {
		return nil, err
	}
	return &Container{spec: spec, cg: cg}, nil
}

// handle returns the in-process liblxc object. Only fork-free liblxc calls
// (command socket and cgroup I/O) may be made on it.
func (c *Container) handle() (*lxc.Container, error) {
	if c.lxc == nil {
		l, err := lxc.NewContainer(c.spec.Name, c.spec.LXCPath)
		if err != nil {
			return nil, err
		}
		c.lxc = l
	}
	return c.lxc, nil
}

func (c *Container) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.handle()
	return err == nil && l.Running()
}

// Start writes the container's config dir and starts it through the
// forkstart helper. It returns once init runs.
func (c *Container) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, err := c.handle(); err == nil && l.Running() {
		return ErrRunning
	}
	if err := c.writeDir(); err != nil {
		return err
	}
	cmd := exec.Command(selfExe, helperStart, c.spec.LXCPath, c.spec.Name)
	cmd.Env = helperEnv
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	// The config may have changed since the handle was loaded (halt
	// signal, limits): reload it whatever happened.
	c.release()
	if err != nil {
		// The monitor of a failed start is still cleaning up when the
		// helper returns.
		fds := pidfds(c.cg.monitorPids(c.spec.Name))
		waitExit(fds, 10*time.Second)
		closeAll(fds)
		c.cg.removeLeftovers(c.spec.Name)
		return fmt.Errorf("%w: %s: %s", ErrStart, strings.TrimSpace(stderr.String()), c.logErrors())
	}
	return nil
}

func (c *Container) release() {
	if c.lxc != nil {
		c.lxc.Release()
		c.lxc = nil
	}
}

// writeDir creates LXCPath/Name with mode 0100, owned by the container's
// root: host users cannot enter it, while the container's root can
// traverse it to reach the device nodes liblxc bind-mounts from there.
func (c *Container) writeDir() error {
	uid, gid := 0, 0
	if !c.spec.Privileged {
		u, _ := c.spec.IDMap.HostID(true, 0) // validated in New
		g, _ := c.spec.IDMap.HostID(false, 0)
		uid, gid = int(u), int(g)
	}
	dir := c.spec.dir()
	if err := os.MkdirAll(c.spec.LXCPath, 0o711); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o100); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Re-assert on every start: the map (and so the owner) may change.
	if err := os.Lchown(dir, uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o100); err != nil {
		return err
	}
	conf, err := renderConfig(&c.spec, c.cg)
	if err != nil {
		return err
	}
	for name, content := range map[string]string{"config": conf, "seccomp": seccompPolicy, "lxc.log": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return makeDevNodes(&c.spec, uid, gid)
}

// logErrors returns the ERROR lines of this start's liblxc log.
func (c *Container) logErrors() string {
	b, err := os.ReadFile(filepath.Join(c.spec.dir(), "lxc.log"))
	if err != nil {
		return ""
	}
	var errs []string
	for _, l := range strings.Split(string(b), "\n") {
		if _, msg, ok := strings.Cut(l, " ERROR "); ok {
			errs = append(errs, strings.TrimSpace(msg))
		}
	}
	return strings.Join(errs, "; ")
}

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

// Freeze suspends every process of the container.
func (c *Container) Freeze() error {
	return c.withRunning(func(l *lxc.Container) error { return l.Freeze() })
}

// Unfreeze resumes a frozen container.
func (c *Container) Unfreeze() error {
	return c.withRunning(func(l *lxc.Container) error { return l.Unfreeze() })
}

func (c *Container) withRunning(f func(*lxc.Container) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.handle()
	if err != nil {
		return err
	}
	if !l.Running() {
		return ErrNotRunning
	}
	return f(l)
}

// Status uses LXD's names.
type Status string

const (
	StatusRunning Status = "Running"
	StatusStopped Status = "Stopped"
	StatusFrozen  Status = "Frozen"
	StatusError   Status = "Error"
)

// State is a snapshot of a container's runtime state.
type State struct {
	Status      Status
	PID         int   // init's pid on the host; 0 when stopped
	Processes   int64 // tasks in the container's pids cgroup
	MemoryUsage int64 // bytes
	CPUUsage    int64 // nanoseconds of CPU time consumed
}

// State reports status and, for a running container, resource usage.
// Usage counters that cannot be read are reported as -1 rather than
// failing the whole call: a listing must not break on one cgroup file.
func (c *Container) State() (State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.handle()
	if err != nil {
		return State{}, err
	}
	var st State
	switch l.State() {
	case lxc.STOPPED:
		return State{Status: StatusStopped}, nil
	case lxc.FROZEN, lxc.FREEZING:
		st.Status = StatusFrozen
	case lxc.RUNNING, lxc.THAWED, lxc.STARTING, lxc.STOPPING:
		st.Status = StatusRunning
	default:
		st.Status = StatusError
	}
	st.PID = max(l.InitPid(), 0)
	st.Processes = c.readInt(l, "pids", "pids.current", "pids.current")
	st.MemoryUsage = c.readInt(l, "memory", "memory.usage_in_bytes", "memory.current")
	st.CPUUsage = c.cpuUsage(l)
	return st, nil
}

func (c *Container) readInt(l *lxc.Container, ctrl, v1file, v2file string) int64 {
	v, err := c.cg.version(ctrl)
	if err != nil {
		return -1
	}
	file := v1file
	if v == 2 {
		file = v2file
	}
	n, err := strconv.ParseInt(strings.Join(l.CgroupItem(file), ""), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func (c *Container) cpuUsage(l *lxc.Container) int64 {
	if v, err := c.cg.version("cpuacct"); err == nil && v == 1 {
		return c.readInt(l, "cpuacct", "cpuacct.usage", "")
	}
	for _, line := range l.CgroupItem("cpu.stat") {
		if us, ok := strings.CutPrefix(line, "usage_usec "); ok {
			if n, err := strconv.ParseInt(us, 10, 64); err == nil {
				return n * 1000
			}
		}
	}
	return -1
}

// UpdateLimits applies limits to the running container and records them
// for the next start. Removing a limit writes the unlimited value.
func (c *Container) UpdateLimits(limits Limits) error {
	if err := limits.validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.handle()
	if err != nil {
		return err
	}
	if !l.Running() {
		return ErrNotRunning
	}
	items, err := c.cg.limitItems(limits, true)
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := l.SetCgroupItem(it.file, it.value); err != nil {
			return fmt.Errorf("setting %s=%s: %w", it.file, it.value, err)
		}
	}
	c.spec.Limits = limits
	return nil
}

// Delete removes the stopped container's config dir (not its rootfs,
// which belongs to the storage layer) and any cgroups left behind.
func (c *Container) Delete() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, err := c.handle(); err == nil && l.Running() {
		return ErrRunning
	}
	c.release()
	if err := os.RemoveAll(c.spec.dir()); err != nil {
		return err
	}
	return c.cg.removeLeftovers(c.spec.Name)
}
