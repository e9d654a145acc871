package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLimitsCPUAgainstOnlineFile: counts and sets are checked against the
// online CPU list, holes included, not against moatd's affinity.
func TestLimitsCPUAgainstOnlineFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "online")
	if err := os.WriteFile(f, []byte("0-1,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := OnlineCPUsFile
	OnlineCPUsFile = f
	t.Cleanup(func() { OnlineCPUsFile = old })
	for _, ok := range []string{"1", "3", "0-1", "0,3", "1,3"} {
		if err := LimitsCPU(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{"4": "from 1 to 3", "0-3": "CPU 2", "2,3": "CPU 2", "0,4": "CPU 4", "3-1": "bad", "0,": "bad", "0-99999999": "bad"} {
		if err := LimitsCPU(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", bad, err, want)
		}
	}
}

func TestCheckRootPool(t *testing.T) {
	devs := map[string]map[string]string{"root": {"type": "disk", "path": "/", "pool": "nope"}, "d": {"type": "disk", "path": "/mnt", "source": "/srv"}}
	if err := CheckRootPool(devs, []string{"default"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("missing pool: %v", err)
	}
	devs["root"]["pool"] = "default"
	if err := CheckRootPool(devs, []string{"default"}); err != nil {
		t.Fatal(err)
	}
}
