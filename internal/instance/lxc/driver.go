package lxcdriver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	lxc "github.com/lxc/go-lxc"
)

// Container is the driver's handle on one container. It is safe for
// concurrent use; operations on one container are serialised.
type Container struct {
	spec Spec
	cg   *cgroups

	mu   sync.Mutex
	lxc  *lxc.Container // loaded from the config written by the last Start
	live *liveInfo      // this run's init pidfd and cgroups; nil if unknown

	abort  stopAbort // lets a forced stop cut short a clean one (no c.mu)
	closed bool      // replaced in the daemon's cache: keep nothing (Close)
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

// Start writes the container's config dir and starts it through the
// forkstart helper. It returns once init runs.
func (c *Container) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.dropIfClosed()
	if l, err := c.handle(); err == nil && l.Running() {
		return ErrRunning
	}
	c.forgetLive()
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

// Close drops what the handle holds for a run (init's pidfd, the open
// cgroup usage files, the netlink socket in the container's namespace)
// and its liblxc object. The container itself is not touched. A handle
// that is replaced must be closed, or each replacement leaks those
// descriptors. A closed handle still answers a caller that got it before
// (a list racing an update), but keeps nothing afterwards: each call
// drops what it had to open (dropIfClosed). A clean stop waiting for init
// keeps using the liblxc object, so then the drop happens when it ends.
func (c *Container) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.dropIfClosed()
}

// dropIfClosed releases the run information and the liblxc object of a
// closed handle. Every method that may load them defers it, under c.mu.
func (c *Container) dropIfClosed() {
	if !c.closed || c.abort.waiting() {
		return
	}
	c.forgetLive()
	c.release()
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
	return makeDevNodes(&c.spec)
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
	defer c.dropIfClosed()
	l, err := c.handle()
	if err != nil {
		return err
	}
	if !l.Running() {
		return ErrNotRunning
	}
	return f(l)
}

// UpdateLimits applies limits to the running container and records them
// for the next start. Removing a limit writes the unlimited value. On an
// error nothing has changed, neither the running container's cgroups nor
// the recorded limits.
func (c *Container) UpdateLimits(limits Limits) error {
	if err := limits.validate(); err != nil {
		return err
	}
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
	if err := c.cg.applyLive(l, c.spec.Name, limits); err != nil {
		return err
	}
	c.spec.Limits = limits
	return nil
}

// Delete removes the stopped container's config dir (not its rootfs,
// which belongs to the storage layer) and any cgroups left behind.
func (c *Container) Delete() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.dropIfClosed()
	if l, err := c.handle(); err == nil && l.Running() {
		return ErrRunning
	}
	c.forgetLive()
	c.release()
	if err := os.RemoveAll(c.spec.dir()); err != nil {
		return err
	}
	return c.cg.removeLeftovers(c.spec.Name)
}
