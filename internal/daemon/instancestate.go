package daemon

import (
	"strconv"

	"github.com/moat/moat/api"
	lxcdriver "github.com/moat/moat/internal/instance/lxc"
)

var statusCodes = map[string]api.StatusCode{"Running": api.Running, "Stopped": api.Stopped, "Frozen": api.Frozen, "Error": api.Error}

func (d *Daemon) state(l loaded) (*api.InstanceState, error) { return d.stateOf(l, true) }

// stateOf is state, with the network interfaces only if asked for (they
// cost two netlink dumps in the container's namespace).
func (d *Daemon) stateOf(l loaded, network bool) (*api.InstanceState, error) {
	h, err := d.handle(l)
	if err != nil {
		return &api.InstanceState{Status: "Error", StatusCode: api.Error}, nil
	}
	read := h.State
	if !network {
		read = h.StateWithoutNetwork
	}
	st, err := read()
	if err != nil {
		return nil, err
	}
	out := &api.InstanceState{
		Status: string(st.Status), StatusCode: statusCodes[string(st.Status)],
		Disk: map[string]api.InstanceStateDisk{}, Network: stateNetwork(st.Network),
		Pid: int64(st.PID), Processes: max(st.Processes, 0),
		Memory: api.InstanceStateMemory{
			Usage: max(st.MemoryUsage, 0), UsagePeak: max(st.MemoryPeak, 0),
			SwapUsage: max(st.SwapUsage, 0), SwapUsagePeak: max(st.SwapPeak, 0),
		},
		CPU: api.InstanceStateCPU{Usage: max(st.CPUUsage, 0)},
	}
	if st.Status == lxcdriver.StatusStopped {
		// LXD has no network namespace to show for a stopped container.
		out.Processes, out.Network = 0, nil
	}
	return out, nil
}

// stateNetwork renders the driver's interfaces in LXD's shape. A running
// container whose interfaces could not be read shows an empty map.
func stateNetwork(ifs map[string]lxcdriver.NetInterface) map[string]api.InstanceStateNetwork {
	out := make(map[string]api.InstanceStateNetwork, len(ifs))
	for name, in := range ifs {
		n := api.InstanceStateNetwork{
			Addresses: make([]api.InstanceStateNetworkAddress, 0, len(in.Addresses)),
			Counters: map[string]int64{
				"bytes_received": int64(in.Counters.BytesReceived), "bytes_sent": int64(in.Counters.BytesSent),
				"packets_received": int64(in.Counters.PacketsReceived), "packets_sent": int64(in.Counters.PacketsSent),
				"errors_received": int64(in.Counters.ErrorsReceived), "errors_sent": int64(in.Counters.ErrorsSent),
				"packets_dropped_outbound": int64(in.Counters.DroppedOutbound), "packets_dropped_inbound": int64(in.Counters.DroppedInbound),
			},
			Hwaddr: in.Hwaddr, HostName: in.HostName, Mtu: in.MTU, State: "down", Type: in.Type,
		}
		if in.Up {
			n.State = "up"
		}
		for _, p := range in.Addresses {
			a := api.InstanceStateNetworkAddress{Family: "inet", Address: p.Addr().String(), Netmask: strconv.Itoa(p.Bits()), Scope: "global"}
			if p.Addr().Is6() {
				a.Family = "inet6"
			}
			switch {
			case p.Addr().IsLoopback():
				a.Scope = "local"
			case p.Addr().IsLinkLocalUnicast():
				a.Scope = "link"
			}
			n.Addresses = append(n.Addresses, a)
		}
		out[name] = n
	}
	return out
}
