package daemon

import (
	"github.com/moat/moat/api"
	lxcdriver "github.com/moat/moat/internal/instance/lxc"
)

var statusCodes = map[string]api.StatusCode{"Running": api.Running, "Stopped": api.Stopped, "Frozen": api.Frozen, "Error": api.Error}

func (d *Daemon) state(l loaded) (*api.InstanceState, error) {
	h, err := d.handle(l)
	if err != nil {
		return &api.InstanceState{Status: "Error", StatusCode: api.Error}, nil
	}
	st, err := h.State()
	if err != nil {
		return nil, err
	}
	out := &api.InstanceState{
		Status: string(st.Status), StatusCode: statusCodes[string(st.Status)],
		Disk: map[string]api.InstanceStateDisk{}, Network: map[string]api.InstanceStateNetwork{},
		Pid: int64(st.PID), Processes: max(st.Processes, 0),
		Memory: api.InstanceStateMemory{Usage: max(st.MemoryUsage, 0)},
		CPU:    api.InstanceStateCPU{Usage: max(st.CPUUsage, 0)},
	}
	if st.Status == lxcdriver.StatusStopped {
		out.Processes = 0
	}
	return out, nil
}
