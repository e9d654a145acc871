package lxcdriver

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// hierarchy is one mounted cgroup tree as liblxc uses it: for root, liblxc
// creates lxc.payload.<name> and lxc.monitor.<name> under the cgroup of
// pid 1 (not the caller's), so base comes from /proc/1/cgroup.
type hierarchy struct {
	mount       string   // mountpoint
	base        string   // pid 1's cgroup, relative to the mount
	controllers []string // v1 controllers; nil for the unified (v2) tree
	unified     bool
}

func (h hierarchy) path(name string) string { return filepath.Join(h.mount, h.base, name) }

// cgroups describes the host's cgroup layout. It is read once: the layout
// of a running system does not change under the daemon.
type cgroups struct {
	hier []hierarchy
	v1   map[string]bool // controllers on a v1 hierarchy
	v2   map[string]bool // controllers enabled on the unified hierarchy
}

var hostCgroups = sync.OnceValues(func() (*cgroups, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	pid1, err := os.ReadFile("/proc/1/cgroup")
	if err != nil {
		return nil, err
	}
	return parseCgroups(string(mi), string(pid1), func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return string(b), err
	})
})

// parseCgroups is the pure part of hostCgroups; readFile reads the
// unified tree's cgroup.controllers.
func parseCgroups(mountinfo, pid1 string, readFile func(string) (string, error)) (*cgroups, error) {
	cg := &cgroups{v1: map[string]bool{}, v2: map[string]bool{}}
	bases := map[string]string{} // "memory" or "name=systemd" or "" (v2) -> path
	for _, line := range strings.Split(strings.TrimSpace(pid1), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			bases[c] = f[2]
		}
	}
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		left, right := strings.Fields(pre), strings.Fields(post)
		if !ok || len(left) < 5 || len(right) < 3 {
			continue
		}
		mount := unescapeMount(left[4])
		switch right[0] {
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(right[2], ",") {
				if _, known := bases[o]; known {
					ctrls = append(ctrls, o)
				}
			}
			if len(ctrls) == 0 {
				continue
			}
			cg.hier = append(cg.hier, hierarchy{mount: mount, base: bases[ctrls[0]], controllers: ctrls})
			for _, c := range ctrls {
				cg.v1[c] = true
			}
		case "cgroup2":
			base, ok := bases[""]
			if !ok {
				continue
			}
			cg.hier = append(cg.hier, hierarchy{mount: mount, base: base, unified: true})
			ctrls, err := readFile(filepath.Join(mount, "cgroup.controllers"))
			if err != nil {
				return nil, err
			}
			for _, c := range strings.Fields(ctrls) {
				cg.v2[c] = true
			}
		}
	}
	if len(cg.hier) == 0 {
		return nil, fmt.Errorf("%w: no cgroup hierarchy mounted", ErrUnsupported)
	}
	return cg, nil
}

// unescapeMount undoes the octal escapes of mountinfo (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupItem is one controller file setting, e.g. {2, "memory.max", "1024"}.
type cgroupItem struct {
	version int
	file    string
	value   string
}

// configKey is the liblxc config key that sets the item at start.
func (i cgroupItem) configKey() string {
	if i.version == 2 {
		return "lxc.cgroup2." + i.file
	}
	return "lxc.cgroup." + i.file
}

// version reports which hierarchy a controller lives on. On a hybrid host
// a controller is bound to v1 if any v1 tree has it: the kernel then keeps
// it off the unified tree.
func (cg *cgroups) version(ctrl string) (int, error) {
	switch {
	case cg.v1[ctrl]:
		return 1, nil
	case cg.v2[ctrl]:
		return 2, nil
	}
	return 0, fmt.Errorf("%w: cgroup controller %s", ErrUnsupported, ctrl)
}

// limitItems translates limits into controller settings. With live set,
// unlimited values are written out explicitly so that removing a limit from
// a running container takes effect; at start they are simply omitted.
func (cg *cgroups) limitItems(l Limits, live bool) ([]cgroupItem, error) {
	var items []cgroupItem
	add := func(ctrl string, v1file, v2file, value string) error {
		v, err := cg.version(ctrl)
		if err != nil {
			return err
		}
		file := v1file
		if v == 2 {
			file = v2file
		}
		items = append(items, cgroupItem{v, file, value})
		return nil
	}

	if l.Memory > 0 || live {
		hard, soft := "-1", "-1"
		v, err := cg.version("memory")
		if err != nil {
			return nil, err
		}
		if v == 2 {
			hard, soft = "max", "0"
		}
		limit := strconv.FormatInt(l.Memory, 10)
		if l.Memory > 0 && l.MemoryEnforce == MemorySoft {
			soft = limit
		} else if l.Memory > 0 {
			hard = limit
		}
		// v2 has no soft limit; memory.low (reclaim others first) is the
		// closest to v1's soft_limit_in_bytes, and is what LXD uses too.
		if err := add("memory", "memory.limit_in_bytes", "memory.max", hard); err != nil {
			return nil, err
		}
		if err := add("memory", "memory.soft_limit_in_bytes", "memory.low", soft); err != nil {
			return nil, err
		}
	}
	if l.Processes > 0 || live {
		value := "max"
		if l.Processes > 0 {
			value = strconv.FormatInt(l.Processes, 10)
		}
		if err := add("pids", "pids.max", "pids.max", value); err != nil {
			return nil, err
		}
	}
	if l.CPU != "" || live {
		set, err := cpuSet(l.CPU)
		if err != nil {
			return nil, err
		}
		if err := add("cpuset", "cpuset.cpus", "cpuset.cpus", set); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// cpuSet turns limits.cpu into a cpuset. A plain number is a count and
// pins the container to that many online CPUs (the lowest ones; balancing
// across containers is the instance layer's business); empty means all.
func cpuSet(limit string) (string, error) {
	if strings.ContainsAny(limit, ",-") {
		return limit, nil
	}
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return "", err
	}
	cpus, err := expandCPUs(strings.TrimSpace(string(online)))
	if err != nil {
		return "", err
	}
	n := len(cpus)
	if limit != "" {
		c, err := strconv.Atoi(limit)
		if err != nil || c < 1 {
			return "", fmt.Errorf("%w: bad limits.cpu %q", ErrInvalidSpec, limit)
		}
		n = min(n, c)
	}
	parts := make([]string, n)
	for i, c := range cpus[:n] {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ","), nil
}

func expandCPUs(list string) ([]int, error) {
	var cpus []int
	for _, r := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, err
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// monitorPids lists the processes in the container's lxc.monitor cgroups.
// All hierarchies are read: a monitor that is shutting down leaves them
// one at a time, so any single one may already be empty.
func (cg *cgroups) monitorPids(name string) []int {
	var pids []int
	for _, h := range cg.hier {
		b, err := os.ReadFile(filepath.Join(h.path("lxc.monitor."+name), "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, p) {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// removeLeftovers deletes the cgroups liblxc leaves behind once a
// container's monitor has exited: its lxc.monitor.<name> in every
// hierarchy, a payload cgroup of a failed start, and the shared
// lxc.pivot scratch group when nobody is in it (rmdir refuses a
// populated cgroup, so a concurrent user is safe).
func (cg *cgroups) removeLeftovers(name string) error {
	var errs []error
	for _, h := range cg.hier {
		for _, d := range []string{"lxc.monitor." + name, "lxc.payload." + name, "lxc.pivot"} {
			err := os.Remove(h.path(d))
			if err != nil && !errors.Is(err, fs.ErrNotExist) && !(d == "lxc.pivot" && errors.Is(err, syscall.EBUSY)) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
