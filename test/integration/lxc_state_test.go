package integration

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/moat/moat/api"
)

// TestLXCClientNetworkState: the real lxc client decodes and renders the
// state Moat reports, lo included (lxc info: TestLXCClientLifecycle).
func TestLXCClientNetworkState(t *testing.T) {
	lxc := lxcLaunched(t)
	// The address columns leave lo out, as they do with LXD.
	if out := lxc.run("list", "--format=csv", "-c", "ns46"); strings.TrimSpace(out) != "c1,RUNNING,," {
		t.Errorf("lxc list -c ns46: %q", out)
	}
	var list []api.InstanceFull
	if err := json.Unmarshal([]byte(lxc.run("list", "--format=json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].State == nil {
		t.Fatalf("lxc list --format=json: %+v", list)
	}
	st := list[0].State
	lo, ok := st.Network["lo"]
	if !ok || lo.State != "up" || lo.Type != "loopback" || lo.Mtu != 65536 ||
		!slices.Contains(lo.Addresses, api.InstanceStateNetworkAddress{Family: "inet", Address: "127.0.0.1", Netmask: "8", Scope: "local"}) {
		t.Errorf("lo through lxc: %+v (network %+v)", lo, st.Network)
	}
	if st.Memory.Usage <= 0 || st.Memory.UsagePeak < st.Memory.Usage {
		t.Errorf("memory through lxc: %+v", st.Memory)
	}
}
