package lxcdriver

import "testing"

// TestStateWithoutNetwork: the network-free State reports the same status,
// pid and usage as State, and no interfaces, for a running container;
// State still has lo afterwards (the cached socket is untouched).
func TestStateWithoutNetwork(t *testing.T) {
	c := startTest(t, testSpec(t))
	full, err := c.State()
	if err != nil || !full.Network["lo"].Up {
		t.Fatalf("State: %+v %v", full, err)
	}
	bare, err := c.StateWithoutNetwork()
	if err != nil || bare.Network != nil || bare.Status != full.Status || bare.PID != full.PID || bare.MemoryUsage <= 0 {
		t.Fatalf("StateWithoutNetwork: %+v %v (State: %+v)", bare, err, full)
	}
	if again, err := c.State(); err != nil || !again.Network["lo"].Up {
		t.Fatalf("State after StateWithoutNetwork: %+v %v", again, err)
	}
	if err := c.Stop(true, 0); err != nil {
		t.Fatal(err)
	}
	if st, err := c.StateWithoutNetwork(); err != nil || st.Status != StatusStopped {
		t.Fatalf("stopped: %+v %v", st, err)
	}
}
