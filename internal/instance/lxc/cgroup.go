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

	lxc "github.com/lxc/go-lxc"
)

// hierarchy is one mounted cgroup tree as liblxc uses it: for root, liblxc
// creates lxc.payload.<name> and lxc.monitor.<name> under the cgroup of
// pid 1 (not the caller's), so base comes from /proc/1/cgroup, less a
// trailing /init.scope (see liblxcBase).
type hierarchy struct {
	mount       string   // mountpoint
	base        string   // liblxc's base cgroup, relative to the mount
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

	// Containers this process has started, updated or found running,
	// whose cpusets a CPU count is balanced against (see pickCPUs). A
	// name goes when its run's leftovers are removed (stop, delete); one
	// that is not running has no payload cgroup and counts for nothing.
	mu    sync.Mutex
	known map[string]bool
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
	cg := &cgroups{v1: map[string]bool{}, v2: map[string]bool{}, known: map[string]bool{}}
	bases := map[string]string{} // "memory" or "name=systemd" or "" (v2) -> path
	for _, line := range strings.Split(strings.TrimSpace(pid1), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			bases[c] = liblxcBase(f[2])
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
			// What can be enabled below the base, where the containers go.
			ctrls, err := readFile(filepath.Join(mount, base, "cgroup.controllers"))
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

// liblxcBase is the cgroup liblxc (5.0, as root and without
// lxc.cgroup.relative) puts containers under, given pid 1's: systemd keeps
// pid 1 in the leaf /init.scope, and liblxc cuts that last component off
// so that containers do not land inside systemd's own scope. Reading the
// monitor and payload cgroups anywhere else would find nothing.
func liblxcBase(pid1 string) string {
	const scope = "/init.scope"
	if !strings.HasSuffix(pid1, scope) {
		return pid1
	}
	if base := strings.TrimSuffix(pid1, scope); base != "" {
		return base
	}
	return "/"
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

// devicesVersion reports which device cgroup liblxc applies a container's
// lxc.cgroup{,2}.devices rules with. On a host whose devices controller
// is on a v1 tree it is that tree. The unified tree has no devices
// controller to list in cgroup.controllers: there device control is an
// eBPF program, which liblxc builds from lxc.cgroup2.devices.* and
// attaches itself.
func (cg *cgroups) devicesVersion() (int, error) {
	if cg.v1["devices"] {
		return 1, nil
	}
	for _, h := range cg.hier {
		if h.unified {
			return 2, nil
		}
	}
	return 0, fmt.Errorf("%w: no device cgroup (neither a v1 devices controller nor the unified hierarchy)", ErrUnsupported)
}

// limitItems translates the limits of container name into controller
// settings. With live set, unlimited values are written out explicitly so
// that removing a limit from a running container takes effect; at start
// they are simply omitted. A CPU count is placed by pickCPUs.
func (cg *cgroups) limitItems(name string, l Limits, live bool) ([]cgroupItem, error) {
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
	cg.noteRunning(name)
	if l.CPU != "" || live {
		set, err := cg.cpuSet(name, l.CPU)
		if err != nil {
			return nil, err
		}
		if err := add("cpuset", "cpuset.cpus", "cpuset.cpus", set); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// applyLive writes limits to the running container l, named name. Either
// every item is written or none is: the values in force are read first,
// and on a failure (the kernel refuses a cpuset that a sub-cgroup inside
// the container still uses, say) those already written are put back.
func (cg *cgroups) applyLive(l *lxc.Container, name string, limits Limits) error {
	items, err := cg.limitItems(name, limits, true)
	if err != nil {
		return err
	}
	prev := make([]string, len(items))
	for i, it := range items {
		v := l.CgroupItem(it.file)
		// go-lxc reads a failure as ""; only v2's cpuset.cpus is empty
		// when in force (it then follows the parent's).
		if len(v) != 1 || v[0] == "" && !(it.version == 2 && it.file == "cpuset.cpus") {
			return fmt.Errorf("reading %s of the running container: %q", it.file, v)
		}
		prev[i] = v[0]
	}
	for i, it := range items {
		err := l.SetCgroupItem(it.file, it.value)
		if err == nil {
			continue
		}
		errs := []error{fmt.Errorf("setting %s=%s: %w", it.file, it.value, err)}
		for j := i - 1; j >= 0; j-- {
			if uerr := l.SetCgroupItem(items[j].file, prev[j]); uerr != nil {
				errs = append(errs, fmt.Errorf("restoring %s=%s failed, the limits are left half-changed: %w", items[j].file, prev[j], uerr))
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// cpuSet turns limits.cpu into a cpuset: a set is kept as it is, empty
// means every online CPU, and a plain number is a count, placed on the
// online CPUs least used by this process's other running containers.
func (cg *cgroups) cpuSet(name, limit string) (string, error) {
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
	if n < len(cpus) {
		use, current := cg.cpuUse(name)
		cpus = pickCPUs(cpus, n, use, current)
	}
	parts := make([]string, len(cpus))
	for i, c := range cpus {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ","), nil
}

// pickCPUs chooses n of online: those the fewest other containers use
// (use counts them per CPU), then those the container is on now
// (current), so that an unrelated limit change does not move it, then
// the lowest numbers. The result is in ascending order.
func pickCPUs(online []int, n int, use map[int]int, current []int) []int {
	order := slices.Clone(online)
	slices.SortStableFunc(order, func(a, b int) int {
		if d := use[a] - use[b]; d != 0 {
			return d
		}
		ina, inb := slices.Contains(current, a), slices.Contains(current, b)
		switch {
		case ina && !inb:
			return -1
		case inb && !ina:
			return 1
		}
		return a - b
	})
	picked := order[:min(n, len(order))]
	slices.Sort(picked)
	return picked
}

// noteRunning adds name to the containers a CPU count is balanced
// against.
func (cg *cgroups) noteRunning(name string) {
	cg.mu.Lock()
	cg.known[name] = true
	cg.mu.Unlock()
}

// cpuUse counts, per CPU, the other running containers of this process
// whose cpuset holds it, and returns the CPUs name runs on now (nil when
// it is not running). The cpusets are read from the payload cgroups, so
// a container that stopped or changed its limits since counts as it is.
// Two containers started at the same moment may still share CPUs until
// one of them is restarted or has its limits changed.
func (cg *cgroups) cpuUse(name string) (map[int]int, []int) {
	cg.mu.Lock()
	names := make([]string, 0, len(cg.known))
	for n := range cg.known {
		names = append(names, n)
	}
	cg.mu.Unlock()
	use := map[int]int{}
	var current []int
	for _, n := range names {
		cpus := cg.payloadCPUs(n)
		if n == name {
			current = cpus
			continue
		}
		for _, c := range cpus {
			use[c]++
		}
	}
	return use, current
}

// payloadCPUs is the cpuset of container name's payload cgroup, nil if it
// has none (not running) or it cannot be read.
func (cg *cgroups) payloadCPUs(name string) []int {
	v, err := cg.version("cpuset")
	if err != nil {
		return nil
	}
	for _, h := range cg.hier {
		file := ""
		switch {
		case v == 1 && slices.Contains(h.controllers, "cpuset"):
			file = "cpuset.cpus"
		case v == 2 && h.unified:
			file = "cpuset.cpus.effective" // cpuset.cpus is empty unless set
		default:
			continue
		}
		b, err := os.ReadFile(filepath.Join(h.path("lxc.payload."+name), file))
		if err != nil {
			return nil
		}
		cpus, err := expandCPUs(strings.TrimSpace(string(b)))
		if err != nil {
			return nil
		}
		return cpus
	}
	return nil
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
	cg.mu.Lock()
	delete(cg.known, name)
	cg.mu.Unlock()
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
