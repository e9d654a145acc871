package lxcdriver

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// cgroupValue reads a controller file of the container's payload cgroup
// from the host side.
func cgroupValue(t *testing.T, c *Container, ctrl, file string) string {
	t.Helper()
	v, err := c.cg.version(ctrl)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.cg.hier {
		if (v == 2 && h.unified) || (v == 1 && slices.Contains(h.controllers, ctrl)) {
			b, err := os.ReadFile(filepath.Join(h.path("lxc.payload."+c.spec.Name), file))
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("no hierarchy for %s", ctrl)
	return ""
}

func memFile(t *testing.T, c *Container, v1, v2 string) string {
	if v, _ := c.cg.version("memory"); v == 2 {
		return v2
	}
	return v1
}

func TestLimits(t *testing.T) {
	spec := testSpec(t)
	spec.Limits = Limits{Memory: 64 << 20, Processes: 20, CPU: "1"}
	c := startTest(t, spec)

	hard := memFile(t, c, "memory.limit_in_bytes", "memory.max")
	if got := cgroupValue(t, c, "memory", hard); got != strconv.Itoa(64<<20) {
		t.Fatalf("%s = %s", hard, got)
	}
	if got := cgroupValue(t, c, "pids", "pids.max"); got != "20" {
		t.Fatalf("pids.max = %s", got)
	}
	if _, out, _ := run(t, c, "nproc"); strings.TrimSpace(out) != "1" {
		t.Fatalf("nproc with limits.cpu=1: %q", out)
	}

	// A bounded fork loop: with 20 pids the shell runs out of forks long
	// before starting 200 sleeps (ash gives up at the first failure). The
	// sleeps get their own stdio so the pipe closes when the shell exits.
	_, out, _ := run(t, c, "sh", "-c", "for i in $(seq 200); do sleep 5 >/dev/null 2>&1 </dev/null & echo started; done 2>&1")
	if started := strings.Count(out, "started"); started >= 20 || !strings.Contains(out, "can't fork") {
		t.Fatalf("pids limit not enforced: %d sleeps started\n%s", started, out)
	}
	if s, err := c.State(); err != nil || s.Processes > 20 {
		t.Fatalf("processes %d > limit: %v", s.Processes, err)
	}

	// Live update, then removal of every limit.
	if err := c.UpdateLimits(Limits{Memory: 128 << 20, MemoryEnforce: MemoryHard, Processes: 500, CPU: "0-0"}); err != nil {
		t.Fatal(err)
	}
	if got := cgroupValue(t, c, "memory", hard); got != strconv.Itoa(128<<20) {
		t.Fatalf("live %s = %s", hard, got)
	}
	if got := cgroupValue(t, c, "pids", "pids.max"); got != "500" {
		t.Fatalf("live pids.max = %s", got)
	}
	if got := cgroupValue(t, c, "cpuset", "cpuset.cpus"); got != "0" {
		t.Fatalf("live cpuset.cpus = %s", got)
	}
	if err := c.UpdateLimits(Limits{Memory: 96 << 20, MemoryEnforce: MemorySoft}); err != nil {
		t.Fatal(err)
	}
	soft := memFile(t, c, "memory.soft_limit_in_bytes", "memory.low")
	if got := cgroupValue(t, c, "memory", soft); got != strconv.Itoa(96<<20) {
		t.Fatalf("soft %s = %s", soft, got)
	}
	if got := cgroupValue(t, c, "memory", hard); got == strconv.Itoa(128<<20) {
		t.Fatal("hard limit kept after switching to soft")
	}
	if got := cgroupValue(t, c, "pids", "pids.max"); got != "max" {
		t.Fatalf("pids.max after removal = %s", got)
	}
	if _, out, _ := run(t, c, "nproc"); strings.TrimSpace(out) == "1" && len(mustCPUs(t)) > 1 {
		t.Fatal("cpu limit not removed")
	}
}

func mustCPUs(t *testing.T) []int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Fatal(err)
	}
	cpus, err := expandCPUs(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return cpus
}
