package lxcdriver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Capabilities dropped from every container. In a user namespace they only
// grant power over namespaced resources, but dropping them costs nothing
// and keeps a kernel bug in those paths out of reach.
var capDropAll = []string{"mac_admin", "mac_override", "sys_module", "sys_rawio", "sys_time"}

// Extra drops for privileged containers, whose root is host root: no
// reboot of the host, no reading the host's kernel log.
var capDropPrivileged = []string{"sys_boot", "syslog"}

// Device cgroup allow-list: mknod of anything, use of the pseudo devices
// every system needs, and nothing else. Devices added by the spec are
// appended to it.
var allowedDevices = []string{
	"c *:* m", "b *:* m",
	"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", // null zero full random urandom
	"c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", // tty console ptmx pts
	"c 10:229 rwm", "c 10:200 rwm", // fuse tun
}

// renderConfig builds the liblxc config file. Everything user-controlled
// has been checked by Spec.validate (no newlines), and mount entry paths are
// fstab-escaped.
func renderConfig(s *Spec, cg *cgroups) (string, error) {
	var b strings.Builder
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }

	hostname := s.Hostname
	if hostname == "" {
		hostname = s.Name
	}
	set("lxc.uts.name", hostname)
	// The rootfs is the instance's overlay, mounted by moatd: it already
	// shows the container's (shifted) ids, so it is bind-mounted as is,
	// not idmapped again.
	set("lxc.rootfs.path", "dir:"+s.Rootfs)
	set("lxc.init.cmd", "/sbin/init")
	halt := s.HaltSignal
	if halt == 0 {
		halt = syscall.SIGPWR
	}
	set("lxc.signal.halt", fmt.Sprint(int(halt)))
	set("lxc.signal.stop", fmt.Sprint(int(syscall.SIGKILL)))
	// liblxc clears init's environment; give it a usable PATH.
	set("lxc.environment", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("lxc.log.file", filepath.Join(s.dir(), "lxc.log"))
	set("lxc.log.level", "warn")
	set("lxc.autodev", "1")
	set("lxc.tty.max", "0")
	set("lxc.pty.max", "1024")
	set("lxc.console.path", "none")
	// Only loopback until the NIC device layer adds interfaces: "none"
	// would share the host's network namespace.
	set("lxc.net.0.type", "empty")
	// Up brings lo up (liblxc does it for an "empty" device with this
	// flag), as LXD's containers have it: 127.0.0.1 works inside.
	set("lxc.net.0.flags", "up")
	set("lxc.seccomp.profile", filepath.Join(s.dir(), "seccomp"))

	drops := capDropAll
	if s.Privileged {
		drops = append(append([]string(nil), capDropAll...), capDropPrivileged...)
		if s.Nesting {
			// Only reachable when the admin forced privileged+nesting
			// (security.privileged.allow_nesting): give what nesting
			// means, or the forced key would silently do nothing.
			set("lxc.mount.auto", "proc:rw sys:rw cgroup:rw:force")
		} else {
			// mixed: /proc/sys, /sys and the cgroup tree are read-only
			// except the container's own cgroup and network sysctls.
			set("lxc.mount.auto", "proc:mixed sys:mixed cgroup:mixed")
		}
	} else {
		for _, e := range s.IDMap {
			for _, kind := range []struct {
				on bool
				c  string
			}{{e.Isuid, "u"}, {e.Isgid, "g"}} {
				if kind.on {
					set("lxc.idmap", fmt.Sprintf("%s %d %d %d", kind.c, e.Nsid, e.Hostid, e.Maprange))
				}
			}
		}
		if s.Nesting {
			// A nested container manager writes sysctls and mounts proc.
			set("lxc.mount.auto", "proc:rw sys:rw cgroup:rw:force")
		} else {
			set("lxc.mount.auto", "proc:mixed sys:mixed cgroup:rw:force")
		}
	}
	set("lxc.cap.drop", strings.Join(drops, " "))

	devVersion, err := cg.devicesVersion()
	if err != nil {
		return "", err
	}
	devKey := "lxc.cgroup.devices"
	if devVersion == 2 {
		devKey = "lxc.cgroup2.devices"
	}
	set(devKey+".deny", "a")
	for _, d := range allowedDevices {
		set(devKey+".allow", d)
	}
	for _, d := range s.Devices {
		set(devKey+".allow", fmt.Sprintf("%c %d:%d rwm", d.Type, d.Major, d.Minor))
	}

	items, err := cg.limitItems(s.Name, s.Limits, false)
	if err != nil {
		return "", err
	}
	for _, it := range items {
		set(it.configKey(), it.value)
	}

	// Disks and device nodes: see startHook.
	if hook := startHook(s); hook != "" {
		set("lxc.hook.start-host", hook)
	}
	return b.String(), nil
}

// devNode is where the host-side node of the spec's i-th device lives:
// inside the per-container dir, which only host root and the container's
// root can traverse. Unprivileged containers cannot mknod, so the node is
// made on the host and bind-mounted.
func devNode(s *Spec, i int) string {
	return filepath.Join(s.dir(), fmt.Sprintf("dev.%d", i))
}

// makeDevNodes (re)creates the host-side device nodes, owned by the host
// ids of each device's uid and gid, and removes those left by devices
// hot-plugged in the last run.
func makeDevNodes(s *Spec) error {
	stale, _ := filepath.Glob(filepath.Join(s.dir(), hotplugNodePrefix+"*"))
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	for i, d := range s.Devices {
		uid, gid := s.nodeOwner(d)
		if err := makeNode(devNode(s, i), d, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
