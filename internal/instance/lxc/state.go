package lxcdriver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

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
	MemoryPeak  int64 // bytes, the highest usage since the cgroup was made
	SwapUsage   int64 // bytes
	SwapPeak    int64 // bytes
	CPUUsage    int64 // nanoseconds of CPU time consumed
	// Network holds the interfaces of the container's network namespace
	// by name; nil when it is not running or they could not be read.
	Network map[string]NetInterface
}

// liveInfo is what State needs of a running container, learned from its
// monitor once per run: a pidfd of init (liveness without a round trip to
// the monitor, and immune to pid reuse) and the payload cgroup directory
// in every hierarchy. Reading usage straight from those directories
// replaces five command-socket round trips per State with a few reads.
type liveInfo struct {
	pidfd *os.File
	pid   int
	dirs  []string // payload cgroup dir per cg.hier entry; "" if unknown
	// fds are the usage files State reads, kept open for the run: a
	// pread at offset 0 makes cgroupfs render a file afresh, and saves
	// the open, fstat, second read and close (and the poller's epoll
	// registration) of os.ReadFile, which dominated a list of ten.
	fds map[usageFile]int
	// absent are the files found missing (memory.peak on older kernels,
	// the swap files without swap accounting), not looked up again.
	absent map[usageFile]bool
	// net is a netlink socket in the container's network namespace, made
	// by the first State of the run that needs it; netFailed records that
	// it could not be made, so each State does not try again.
	net       *netnsConn
	netFailed bool
}

type usageFile struct{ dir, name string }

// alive reports whether init still runs: a pidfd polls readable once its
// process has exited.
func (li *liveInfo) alive() bool {
	fds := []unix.PollFd{{Fd: int32(li.pidfd.Fd()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 0
	}
}

// forgetLive drops the cached run information (start, stop, delete).
func (c *Container) forgetLive() {
	if c.live != nil {
		c.live.pidfd.Close()
		for _, fd := range c.live.fds {
			unix.Close(fd)
		}
		if c.live.net != nil {
			c.live.net.close()
		}
		c.live = nil
	}
}

// learnLive asks the monitor for init's pidfd and finds init's payload
// cgroups. It returns nil if anything is missing; State then keeps using
// liblxc.
func (c *Container) learnLive(l *lxc.Container) *liveInfo {
	pidfd, err := l.InitPidFd()
	if err != nil {
		return nil
	}
	li := &liveInfo{pidfd: pidfd, pid: l.InitPid()}
	ok := li.pid > 0 && c.findPayload(li)
	// The pid was read after the pidfd was taken: if init is still alive
	// now, the pid (and the cgroup file read for it) was init's.
	if !ok || !li.alive() {
		pidfd.Close()
		return nil
	}
	// A container found running (re-adopted after a daemon restart
	// included) counts for the CPU balance from now on.
	c.cg.noteRunning(c.spec.Name)
	return li
}

// findPayload fills li.dirs from /proc/PID/cgroup: each path is cut after
// its lxc.payload.NAME component (NAME-N when liblxc had to pick another
// name), so processes moved into sub-cgroups are still counted as a whole.
func (c *Container) findPayload(li *liveInfo) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(li.pid) + "/cgroup")
	if err != nil {
		return false
	}
	paths := map[string]string{} // controller, or "" for the unified tree -> path
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		p, ok := payloadPrefix(f[2], c.spec.Name)
		if !ok {
			continue
		}
		if f[1] == "" {
			paths[""] = p
		}
		for _, ctrl := range strings.Split(f[1], ",") {
			paths[ctrl] = p
		}
	}
	li.dirs = make([]string, len(c.cg.hier))
	for i, h := range c.cg.hier {
		key := ""
		if !h.unified {
			key = h.controllers[0]
		}
		if p, ok := paths[key]; ok {
			li.dirs[i] = filepath.Join(h.mount, p)
		}
	}
	return true
}

// payloadPrefix cuts a cgroup path after its lxc.payload.NAME[-N]
// component.
func payloadPrefix(path, name string) (string, bool) {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		rest, ok := strings.CutPrefix(p, "lxc.payload."+name)
		if !ok {
			continue
		}
		if n, isIdx := strings.CutPrefix(rest, "-"); rest == "" || (isIdx && n != "" && strings.Trim(n, "0123456789") == "") {
			return strings.Join(parts[:i+1], "/"), true
		}
	}
	return "", false
}

// dir is the payload cgroup directory holding ctrl's files, "" if unknown.
func (li *liveInfo) dir(cg *cgroups, ctrl string) string {
	v, err := cg.version(ctrl)
	if err != nil {
		return ""
	}
	for i, h := range cg.hier {
		if (v == 2 && h.unified) || (v == 1 && !h.unified && containsString(h.controllers, ctrl)) {
			return li.dirs[i]
		}
	}
	return ""
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (li *liveInfo) read(cg *cgroups, ctrl, file string) (string, bool) {
	d := li.dir(cg, ctrl)
	if d == "" {
		return "", false
	}
	return li.readFile(d, file)
}

// readFile reads a payload cgroup file through its cached descriptor. A
// file removed with its cgroup (the container stopped) fails with ENODEV,
// which makes State drop the cache and ask liblxc.
func (li *liveInfo) readFile(dir, name string) (string, bool) {
	key := usageFile{dir, name}
	fd, ok := li.fds[key]
	if !ok {
		if li.absent[key] {
			return "", false
		}
		var err error
		if fd, err = unix.Open(filepath.Join(dir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			if err == unix.ENOENT {
				if li.absent == nil {
					li.absent = map[usageFile]bool{}
				}
				li.absent[key] = true
			}
			return "", false
		}
		if li.fds == nil {
			li.fds = map[usageFile]int{}
		}
		li.fds[key] = fd
	}
	var buf [1024]byte
	n, err := unix.Pread(fd, buf[:], 0)
	for err == unix.EINTR {
		n, err = unix.Pread(fd, buf[:], 0)
	}
	if err != nil {
		return "", false
	}
	if n == len(buf) { // larger than any usage file we read: read it whole
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", false
		}
		return strings.TrimSpace(string(b)), true
	}
	return strings.TrimSpace(string(buf[:n])), true
}

// State reports status and, for a running container, resource usage.
// Usage counters that cannot be read are reported as -1 rather than
// failing the whole call: a listing must not break on one cgroup file.
func (c *Container) State() (State, error) { return c.state(true) }

// StateWithoutNetwork is State without the network interfaces (Network
// is nil), for callers that do not show them: it saves the two netlink
// dumps in the container's namespace.
func (c *Container) StateWithoutNetwork() (State, error) { return c.state(false) }

func (c *Container) state(network bool) (State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.dropIfClosed()
	if c.live != nil {
		if c.live.alive() {
			if st, ok := c.fastState(network); ok {
				return st, nil
			}
		}
		c.forgetLive()
	}
	l, err := c.handle()
	if err != nil {
		return State{}, err
	}
	var st State
	switch s := l.State(); s {
	case lxc.STOPPED:
		return State{Status: StatusStopped}, nil
	case lxc.FROZEN, lxc.FREEZING, lxc.RUNNING, lxc.THAWED:
		// From now on State reads the cgroup files and the network
		// namespace directly, this first time included.
		if c.live = c.learnLive(l); c.live != nil {
			if st, ok := c.fastState(network); ok {
				return st, nil
			}
			c.forgetLive()
		}
		st.Status = StatusRunning
		if s == lxc.FROZEN || s == lxc.FREEZING {
			st.Status = StatusFrozen
		}
	case lxc.STARTING, lxc.STOPPING:
		st.Status = StatusRunning
	default:
		st.Status = StatusError
	}
	st.PID = max(l.InitPid(), 0)
	st.Processes = c.readInt(l, "pids", "pids.current", "pids.current")
	st.MemoryUsage, st.MemoryPeak, st.SwapUsage, st.SwapPeak = c.memory(func(file string) int64 {
		n, err := strconv.ParseInt(strings.Join(l.CgroupItem(file), ""), 10, 64)
		if err != nil {
			return -1
		}
		return n
	})
	st.CPUUsage = c.cpuUsage(l)
	return st, nil
}

// fastState is State from the cached pidfd and cgroup directories. The
// freezer state decides between Running and Frozen, as liblxc does.
func (c *Container) fastState(network bool) (State, bool) {
	li := c.live
	st := State{Status: StatusRunning, PID: li.pid}
	v, err := c.cg.version("freezer")
	switch {
	case err == nil && v == 1:
		s, ok := li.read(c.cg, "freezer", "freezer.state")
		if !ok {
			return State{}, false
		}
		if s == "FROZEN" || s == "FREEZING" {
			st.Status = StatusFrozen
		}
	default: // the v2 freezer is part of the unified tree's core
		s, ok := li.readUnified(c.cg, "cgroup.freeze")
		if !ok {
			return State{}, false
		}
		if s == "1" {
			st.Status = StatusFrozen
		}
	}
	st.Processes = li.readInt(c.cg, "pids", "pids.current", "pids.current")
	st.MemoryUsage, st.MemoryPeak, st.SwapUsage, st.SwapPeak = c.memory(func(file string) int64 {
		return li.readInt(c.cg, "memory", file, file)
	})
	if network {
		st.Network = li.network()
	}
	st.CPUUsage = -1
	if v, err := c.cg.version("cpuacct"); err == nil && v == 1 {
		st.CPUUsage = li.readInt(c.cg, "cpuacct", "cpuacct.usage", "")
	} else if s, ok := li.read(c.cg, "cpu", "cpu.stat"); ok {
		for _, line := range strings.Split(s, "\n") {
			if us, ok := strings.CutPrefix(line, "usage_usec "); ok {
				if n, err := strconv.ParseInt(us, 10, 64); err == nil {
					st.CPUUsage = n * 1000
				}
			}
		}
	}
	return st, true
}

// network reads the container's interfaces, or returns nil. A socket
// that failed a dump is closed; the next State opens another.
func (li *liveInfo) network() map[string]NetInterface {
	if li.net == nil {
		if li.netFailed {
			return nil
		}
		c, err := dialNetns(int(li.pidfd.Fd()))
		if err != nil {
			li.netFailed = true
			return nil
		}
		li.net = c
	}
	ifs, err := li.net.interfaces()
	if err != nil {
		li.net.close()
		li.net = nil
		return nil
	}
	return ifs
}

// memory returns usage, peak usage, swap and peak swap in bytes (-1 when
// unknown) through read, which reads one file of the memory controller.
// cgroup v1 only counts memory+swap together (the memsw files, when swap
// accounting is on); swap is that minus memory.
func (c *Container) memory(read func(file string) int64) (usage, peak, swap, swapPeak int64) {
	v, err := c.cg.version("memory")
	if err != nil {
		return -1, -1, -1, -1
	}
	if v == 2 {
		return read("memory.current"), read("memory.peak"), read("memory.swap.current"), read("memory.swap.peak")
	}
	usage, peak = read("memory.usage_in_bytes"), read("memory.max_usage_in_bytes")
	swap, swapPeak = -1, -1
	if both := read("memory.memsw.usage_in_bytes"); both >= 0 && usage >= 0 {
		swap = max(both-usage, 0) // two reads, not one snapshot
	}
	if both := read("memory.memsw.max_usage_in_bytes"); both >= 0 && peak >= 0 {
		swapPeak = max(both-peak, 0)
	}
	return usage, peak, swap, swapPeak
}

func (li *liveInfo) readUnified(cg *cgroups, file string) (string, bool) {
	for i, h := range cg.hier {
		if h.unified && li.dirs[i] != "" {
			return li.readFile(li.dirs[i], file)
		}
	}
	return "", false
}

func (li *liveInfo) readInt(cg *cgroups, ctrl, v1file, v2file string) int64 {
	v, err := cg.version(ctrl)
	if err != nil {
		return -1
	}
	file := v1file
	if v == 2 {
		file = v2file
	}
	s, ok := li.read(cg, ctrl, file)
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
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
