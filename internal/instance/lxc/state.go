package lxcdriver

import (
	"strconv"
	"strings"

	lxc "github.com/lxc/go-lxc"
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
