package config

import "testing"

// CPUCount counts a count as itself and each CPU of a cpuset once.
func TestCPUCount(t *testing.T) {
	for v, want := range map[string]int64{
		"": 0, "2": 2, "0-3": 4, "0,0": 1, "0-3,2-5": 6, "5,0-1,1": 3, "0-1,3,2": 4, "1-1": 1,
	} {
		if n, err := CPUCount(v); err != nil || n != want {
			t.Errorf("CPUCount(%q) = %d, %v; want %d", v, n, err, want)
		}
	}
	for _, bad := range []string{"3-1", "a", "1-", ",1", "+1", "0,+1"} {
		if _, err := CPUCount(bad); err == nil {
			t.Errorf("CPUCount(%q) accepted", bad)
		}
	}
}
