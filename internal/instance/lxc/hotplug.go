package lxcdriver

/*
#include "hotplug.h"
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrHotplug wraps a device change that could not be applied to a
// running container; the container is left as it was.
var ErrHotplug = errors.New("device change not applied to the running container")

// helperHotplug is argv[1] of the helper run by hotplug.c's constructor.
const helperHotplug = C.MOAT_HOTPLUG_ARG

// Disks and device nodes are mounted by the hotplug helper both at start
// (from liblxc's start-host hook, once the container's mount namespace is
// set up and before init runs) and on a running container, so that a
// restarted container looks exactly like a hot-plugged one. liblxc's own
// mount entries would leave read-only bind mounts that container root can
// remount read-write: the helper's are locked (see hotplug.c).

// bindOp is the helper's operation for one mount.
func bindOp(source, path string, readOnly bool) string {
	mode := "mw:"
	if readOnly {
		mode = "mr:"
	}
	return mode + hex.EncodeToString([]byte(source)) + ":" + hex.EncodeToString([]byte(path))
}

func unbindOp(path string) string { return "u:" + hex.EncodeToString([]byte(path)) }

// userMode tells the helper whether to enter the container's user
// namespace.
func userMode(s *Spec) string {
	if s.Privileged {
		return "p"
	}
	return "u"
}

// startHook is the value of lxc.hook.start-host that mounts s's disks and
// device nodes, or "" if there are none. Parents are mounted before what
// is below them. liblxc runs the hook with /bin/sh from the monitor, which
// is this binary's forkstart helper: /proc/$PPID/exe is this binary even
// if an upgrade replaced the file since.
func startHook(s *Spec) string {
	type bind struct {
		source, path string
		ro           bool
	}
	var binds []bind
	for _, m := range s.Mounts {
		binds = append(binds, bind{m.Source, m.Path, m.ReadOnly})
	}
	for i, d := range s.Devices {
		binds = append(binds, bind{nodeSource(devNode(s, i)), d.Path, false})
	}
	if len(binds) == 0 {
		return ""
	}
	slices.SortStableFunc(binds, func(a, b bind) int { return pathDepth(a.path) - pathDepth(b.path) })
	ops := []string{"/proc/$PPID/exe", helperHotplug, "env", userMode(s)}
	for _, b := range binds {
		ops = append(ops, bindOp(b.source, b.path, b.ro))
	}
	// liblxc appends the container name, section and hook type.
	return strings.Join(append(ops, "--"), " ")
}

// runHotplug runs one helper operation against the container whose init
// pidfd is li's.
func runHotplug(li *liveInfo, s *Spec, op string) error {
	cmd := exec.Command(selfExe, helperHotplug, "fd", userMode(s), op)
	cmd.ExtraFiles = []*os.File{li.pidfd} // fd 3
	cmd.Env = helperEnv
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return err
	}
	return nil
}

// UpdateDevices makes the running container's disks and device nodes
// match c's spec, given that they match prev's (the spec it was started
// with, or last updated to). Mounts that differ are detached and attached
// again; devices also get their device cgroup rule. Either every change
// is applied or, after undoing what was done, none: the error then wraps
// ErrHotplug. A change of privilege or ID map cannot be applied live
// (ErrUnsupported), nor a device change where the devices controller is
// on cgroup v2, which would need a BPF program.
func (c *Container) UpdateDevices(prev *Container) error {
	oldM, newM := onlyIn(prev.spec.Mounts, c.spec.Mounts), onlyIn(c.spec.Mounts, prev.spec.Mounts)
	oldD, newD := onlyIn(prev.spec.Devices, c.spec.Devices), onlyIn(c.spec.Devices, prev.spec.Devices)
	if len(oldM)+len(newM)+len(oldD)+len(newD) == 0 {
		return nil
	}
	if prev.spec.Privileged != c.spec.Privileged || !slices.Equal(prev.spec.IDMap, c.spec.IDMap) {
		return fmt.Errorf("%w: devices change together with privilege or the ID map", ErrUnsupported)
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
	if c.live == nil || !c.live.alive() {
		c.forgetLive()
		if c.live = c.learnLive(l); c.live == nil {
			return fmt.Errorf("%w: cannot find the container's init", ErrHotplug)
		}
	}
	devDir := ""
	if len(oldD)+len(newD) > 0 {
		if v, err := c.cg.devicesVersion(); err != nil || v != 1 {
			return fmt.Errorf("%w: device cgroup v2 needs a BPF program, which moat does not load at run time", ErrUnsupported)
		}
		if devDir = c.live.dir(c.cg, "devices"); devDir == "" {
			return fmt.Errorf("%w: the container's devices cgroup is unknown", ErrHotplug)
		}
	}
	for _, m := range newM {
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("%w: disk source: %w", ErrHotplug, err)
		}
	}

	li, prevSpec := c.live, &prev.spec
	type step struct {
		path     string
		do, undo func() error
	}
	var removals, additions []step
	for _, m := range oldM {
		removals = append(removals, step{m.Path,
			func() error { return runHotplug(li, &c.spec, unbindOp(m.Path)) },
			func() error { return runHotplug(li, prevSpec, bindOp(m.Source, m.Path, m.ReadOnly)) }})
	}
	for _, d := range oldD {
		if !allowedBy(d, c.spec.Devices) {
			removals = append(removals, step{d.Path,
				func() error { return writeDeviceRule(devDir, "devices.deny", d, false) },
				func() error { return writeDeviceRule(devDir, "devices.allow", d, true) }})
		}
		removals = append(removals, step{d.Path,
			func() error { return c.unbindNode(li, d) },
			func() error { return c.bindNode(li, d) }})
	}
	for _, d := range newD {
		additions = append(additions, step{d.Path,
			func() error { return writeDeviceRule(devDir, "devices.allow", d, true) },
			func() error {
				if allowedBy(d, prev.spec.Devices) {
					return nil
				}
				return writeDeviceRule(devDir, "devices.deny", d, false)
			}})
		additions = append(additions, step{d.Path,
			func() error { return c.bindNode(li, d) },
			func() error { return c.unbindNode(li, d) }})
	}
	for _, m := range newM {
		additions = append(additions, step{m.Path,
			func() error { return runHotplug(li, &c.spec, bindOp(m.Source, m.Path, m.ReadOnly)) },
			func() error { return runHotplug(li, &c.spec, unbindOp(m.Path)) }})
	}
	// As at start, what lies below another mount goes on after it and
	// comes off before it. Removals first: a changed device keeps its path.
	slices.SortStableFunc(removals, func(a, b step) int { return pathDepth(b.path) - pathDepth(a.path) })
	slices.SortStableFunc(additions, func(a, b step) int { return pathDepth(a.path) - pathDepth(b.path) })
	var done []step
	for _, st := range append(removals, additions...) {
		if err := st.do(); err != nil {
			errs := []error{fmt.Errorf("%w: %w", ErrHotplug, err)}
			for i := len(done) - 1; i >= 0; i-- {
				if uerr := done[i].undo(); uerr != nil {
					errs = append(errs, fmt.Errorf("undoing a step failed, the container is left half-changed: %w", uerr))
				}
			}
			return errors.Join(errs...)
		}
		done = append(done, st)
	}
	return nil
}

func pathDepth(p string) int { return strings.Count(p, "/") }

// onlyIn lists the elements of a that are not in b.
func onlyIn[T comparable](a, b []T) []T {
	var out []T
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// bindNode makes a host-side node for d, as makeDevNodes does at start,
// and bind-mounts it. The node stays while it is mounted: the kernel
// refuses to bind-mount an unlinked one again, which a nested container
// manager inside would do.
func (c *Container) bindNode(li *liveInfo, d Device) error {
	uid, gid := c.spec.nodeOwner(d)
	path := hotplugNode(&c.spec, d.Path)
	if err := makeNode(path, d, uid, gid); err != nil {
		return err
	}
	if err := runHotplug(li, &c.spec, bindOp(nodeSource(path), d.Path, false)); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// unbindNode detaches the node at d's path and removes a hot-plugged
// host-side node (one made at start stays until the next start).
func (c *Container) unbindNode(li *liveInfo, d Device) error {
	if err := runHotplug(li, &c.spec, unbindOp(d.Path)); err != nil {
		return err
	}
	if err := os.Remove(hotplugNode(&c.spec, d.Path)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// nodeSource is the helper's source for the host-side node at path. The
// helper follows no symlink in a source (disk sources come resolved and
// checked from the daemon), and moat's own state dir may lie behind one.
func nodeSource(path string) string {
	if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		return filepath.Join(dir, filepath.Base(path))
	}
	return path
}

// hotplugNode is where the host-side node of a device hot-plugged at path
// lives: in the per-container dir, like devNode's, named after the path
// (there is one device per path).
func hotplugNode(s *Spec, path string) string {
	sum := sha256.Sum256([]byte(path))
	return filepath.Join(s.dir(), hotplugNodePrefix+hex.EncodeToString(sum[:12]))
}

const hotplugNodePrefix = "hotplug-dev."

// allowedBy reports whether the default allow-list or one of devs grants
// what a rule for d would, so that denying d would take too much away.
func allowedBy(d Device, devs []Device) bool {
	for _, o := range devs {
		if o.Type == d.Type && o.Major == d.Major && o.Minor == d.Minor {
			return true
		}
	}
	for _, rule := range allowedDevices {
		for _, minor := range []string{fmt.Sprint(d.Minor), "*"} {
			if rule == fmt.Sprintf("%c %d:%s rwm", d.Type, d.Major, minor) {
				return true
			}
		}
	}
	return false
}

// writeDeviceRule writes d's rule to file of the v1 payload cgroup dir.
// A v1 allow does not reach existing child cgroups (a deny does), so with
// recurse it is written below dir too.
func writeDeviceRule(dir, file string, d Device, recurse bool) error {
	rule := []byte(fmt.Sprintf("%c %d:%d rwm", d.Type, d.Major, d.Minor))
	if !recurse {
		return os.WriteFile(filepath.Join(dir, file), rule, 0)
	}
	return filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return err
		}
		return os.WriteFile(filepath.Join(p, file), rule, 0)
	})
}

// makeNode (re)creates the host-side node for d at path, owned by uid and
// gid (host ids: see Spec.nodeOwner).
func makeNode(path string, d Device, uid, gid int) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	mode := uint32(d.Mode)
	if mode == 0 {
		mode = 0o660
	}
	kind := uint32(unix.S_IFCHR)
	if d.Type == BlockDevice {
		kind = unix.S_IFBLK
	}
	if err := unix.Mknod(path, kind|mode, int(unix.Mkdev(d.Major, d.Minor))); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	// mknod applies the umask; the spec's mode is what the user asked for.
	if err := os.Chmod(path, os.FileMode(mode)); err != nil {
		return err
	}
	return os.Lchown(path, uid, gid)
}
