package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// spawnSleeps has a shell inside name start up to n background sleeps,
// stopping at the first failed fork, and returns how many started and the
// output (stderr folded in, so a fork failure shows).
func spawnSleeps(t *testing.T, d *testdaemon.Daemon, name string, n int) (int, string) {
	t.Helper()
	script := `sh -c 'i=0; while [ $i -lt ` + strconv.Itoa(n) + ` ]; do sleep 300 & i=$((i+1)); echo started $i; done' 2>&1; echo done`
	_, out := execOut(t, d, name, "sh", "-c", script)
	started := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, err := strconv.Atoi(strings.TrimPrefix(l, "started ")); err == nil {
			started = k
		}
	}
	return started, out
}

// TestProcessLimitAppliedLive: limits.processes set on a running container
// that started without it caps its pids cgroup at once (forks beyond it
// fail), and removing it lifts the cap at once.
func TestProcessLimitAppliedLive(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "plive", nil)
	if got := cgroupFile(t, d, "plive", "pids", "pids.max"); got != "max" {
		t.Fatalf("pids.max without limits.processes: %q", got)
	}
	if cur := cgroupInt(t, d, "plive", "pids", "pids.current"); cur >= 5 {
		t.Fatalf("the idle container already has %d tasks: the limit of 10 would prove nothing", cur)
	}

	mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/instances/plive", map[string]any{"config": map[string]string{"limits.processes": "10"}}))
	if got := cgroupFile(t, d, "plive", "pids", "pids.max"); got != "10" {
		t.Fatalf("pids.max after PATCH limits.processes=10: %q", got)
	}
	started, out := spawnSleeps(t, d, "plive", 30)
	if started == 0 || started >= 30 || !strings.Contains(out, "fork") {
		t.Fatalf("30 sleeps under limits.processes=10: %d started, no fork failure seen:\n%s", started, out)
	}
	// The sleeps outlive the exec: the cgroup still holds them.
	if cur := cgroupInt(t, d, "plive", "pids", "pids.current"); cur > 10 || cur < int64(started) {
		t.Fatalf("pids.current = %d with %d sleeps started, limit 10", cur, started)
	}
	if ev := cgroupFile(t, d, "plive", "pids", "pids.events"); ev == "max 0" {
		t.Fatalf("pids.events counts no refused fork: %q", ev)
	}

	// Removing the key lifts the limit on the running container; exec
	// works again even though the sleeps still fill the old limit.
	mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/instances/plive", map[string]any{"config": map[string]string{"limits.processes": ""}}))
	if got := gapInstance(t, d, "plive").Config["limits.processes"]; got != "" {
		t.Fatalf("limits.processes still set: %q", got)
	}
	if got := cgroupFile(t, d, "plive", "pids", "pids.max"); got != "max" {
		t.Fatalf("pids.max after removing limits.processes: %q", got)
	}
	if code, out := execOut(t, d, "plive", "sh", "-c", "kill $(pidof sleep)"); code != 0 {
		t.Fatalf("killing the sleeps: %d %q", code, out)
	}
	started, out = spawnSleeps(t, d, "plive", 30)
	if started != 30 || strings.Contains(out, "fork") {
		t.Fatalf("without the limit: %d of 30 sleeps started:\n%s", started, out)
	}
	if cur := cgroupInt(t, d, "plive", "pids", "pids.current"); cur < 30 {
		t.Fatalf("pids.current = %d with 30 sleeps running", cur)
	}
}

// TestCPULimitThroughAPI: limits.cpu=1 at start pins the container to one
// CPU; a CPU set applied live widens or narrows what it sees; a CPU the
// host does not have is a 400 naming limits.cpu that changes nothing.
func TestCPULimitThroughAPI(t *testing.T) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if online := strings.TrimSpace(string(b)); err != nil || (online != "0-1" && online != "0,1") {
		t.Fatalf("the test needs exactly CPUs 0 and 1 online, the host has %q (%v)", online, err)
	}
	d, _ := withImage(t)
	launch(t, d, "cpus", map[string]string{"limits.cpu": "1"})
	one := cgroupFile(t, d, "cpus", "cpuset", "cpuset.cpus")
	if one != "0" && one != "1" {
		t.Fatalf("limits.cpu=1: cpuset.cpus %q, want a single CPU", one)
	}
	nproc := func(want string) {
		t.Helper()
		if code, out := execOut(t, d, "cpus", "nproc"); code != 0 || out != want+"\n" {
			t.Fatalf("nproc %d %q, want %s", code, out, want)
		}
	}
	nproc("1")

	for _, step := range []struct{ value, cpuset, nproc string }{
		{"0-1", "0-1", "2"},
		{"1-1", "1", "1"},
		{"0,1", "0-1", "2"},
	} {
		mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/instances/cpus", map[string]any{"config": map[string]string{"limits.cpu": step.value}}))
		if got := cgroupFile(t, d, "cpus", "cpuset", "cpuset.cpus"); got != step.cpuset {
			t.Fatalf("limits.cpu=%s live: cpuset.cpus %q, want %q", step.value, got, step.cpuset)
		}
		nproc(step.nproc)
	}

	for _, bad := range []string{"5", "5-5", "0,5"} {
		res := d.Do("PATCH", "/1.0/instances/cpus", map[string]any{"config": map[string]string{"limits.cpu": bad}})
		if res.Status != 400 || !strings.Contains(res.Body.Error, "limits.cpu") {
			t.Errorf("limits.cpu=%s: %d %q, want 400 naming limits.cpu", bad, res.Status, res.Body.Error)
		}
		if got := gapInstance(t, d, "cpus").Config["limits.cpu"]; got != "0,1" {
			t.Fatalf("refused limits.cpu=%s changed the config to %q", bad, got)
		}
		if got := cgroupFile(t, d, "cpus", "cpuset", "cpuset.cpus"); got != "0-1" {
			t.Fatalf("refused limits.cpu=%s changed cpuset.cpus to %q", bad, got)
		}
	}
	nproc("2")
	if res := gapCreate(d, "cpubad", map[string]string{"limits.cpu": "5"}, nil); res.Status != 400 || !strings.Contains(res.Body.Error, "limits.cpu") {
		t.Errorf("create with limits.cpu=5: %d %q", res.Status, res.Body.Error)
	}
	if r := d.Do("GET", "/1.0/instances/cpubad", nil); r.Status != 404 {
		t.Fatalf("the refused create left an instance: %d", r.Status)
	}
}

// TestMemorySoftLimitThroughAPI: limits.memory.enforce=soft at start puts
// the limit in memory.soft_limit_in_bytes and leaves the hard limit off;
// switching enforce live moves the limit between the two files.
func TestMemorySoftLimitThroughAPI(t *testing.T) {
	const limit = 256 << 20
	// Above this a v1 memory limit is "unlimited" (the kernel rounds -1
	// down to its page counter maximum).
	const unlimited = int64(1) << 62
	d, _ := withImage(t)
	launch(t, d, "soft", map[string]string{"limits.memory": "256MiB", "limits.memory.enforce": "soft"})
	check := func(when string, wantSoft, wantHard int64) {
		t.Helper()
		soft := cgroupInt(t, d, "soft", "memory", "memory.soft_limit_in_bytes")
		hard := cgroupInt(t, d, "soft", "memory", "memory.limit_in_bytes")
		okSoft := soft == wantSoft || (wantSoft == unlimited && soft >= unlimited)
		okHard := hard == wantHard || (wantHard == unlimited && hard >= unlimited)
		if !okSoft || !okHard {
			t.Fatalf("%s: soft_limit_in_bytes %d, limit_in_bytes %d; want %d and %d (%d = unlimited)", when, soft, hard, wantSoft, wantHard, unlimited)
		}
	}
	check("enforce=soft at start", limit, unlimited)

	mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/instances/soft", map[string]any{"config": map[string]string{"limits.memory.enforce": "hard"}}))
	check("enforce=hard live", unlimited, limit)

	mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/instances/soft", map[string]any{"config": map[string]string{"limits.memory.enforce": "soft"}}))
	check("enforce=soft live", limit, unlimited)

	res := d.Do("PATCH", "/1.0/instances/soft", map[string]any{"config": map[string]string{"limits.memory.enforce": "firm"}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, "limits.memory.enforce") {
		t.Fatalf("limits.memory.enforce=firm: %d %q", res.Status, res.Body.Error)
	}
	check("after a refused enforce value", limit, unlimited)
}
