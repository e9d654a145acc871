package project

import (
	"strings"
	"testing"
)

func TestLimits(t *testing.T) {
	proj := map[string]string{"limits.instances": "2", "limits.memory": "1GiB", "limits.processes": "100"}
	a := Instance{Name: "a", Config: map[string]string{"limits.memory": "512MiB", "limits.processes": "50"}}
	b := Instance{Name: "b", Config: map[string]string{"limits.memory": "512MiB", "limits.processes": "50"}}
	if err := CheckLimits("p", proj, []Instance{a, b}); err != nil {
		t.Fatalf("exactly at the limits: %v", err)
	}
	c := Instance{Name: "c", Config: map[string]string{"limits.memory": "1MiB", "limits.processes": "1"}}
	if err := CheckLimits("p", proj, []Instance{a, b, c}); err == nil || !strings.Contains(err.Error(), "limits.instances") {
		t.Fatalf("third instance: %v", err)
	}
	big := Instance{Name: "b", Config: map[string]string{"limits.memory": "513MiB", "limits.processes": "50"}}
	if err := CheckLimits("p", proj, []Instance{a, big}); err == nil || !strings.Contains(err.Error(), "limits.memory") {
		t.Fatalf("over the memory total: %v", err)
	}
	unset := Instance{Name: "u", Config: map[string]string{"limits.processes": "5"}}
	err := CheckLimits("p", proj, []Instance{a, unset})
	if err == nil || !strings.Contains(err.Error(), `Instance "u" in project "p" has no "limits.memory" config`) {
		t.Fatalf("instance without a limit: %v", err)
	}
	u, err := Usage(map[string]string{"limits.cpu": "4"}, []Instance{
		{Name: "x", Config: map[string]string{"limits.cpu": "0-1,3"}}, {Name: "y", Config: map[string]string{"limits.cpu": "1"}}})
	if err != nil || u["cpu"].Usage != 4 || u["cpu"].Limit != 4 || u["memory"].Limit != -1 || u["instances"].Usage != 2 {
		t.Fatalf("usage = %+v, %v", u, err)
	}
}

// A cpuset counts each CPU once against the project's limits.cpu,
// however often it names it (config.CPUCount).
func TestCPUCountUnion(t *testing.T) {
	proj := map[string]string{"limits.cpu": "2"}
	a := Instance{Name: "a", Config: map[string]string{"limits.cpu": "0,0"}}
	b := Instance{Name: "b", Config: map[string]string{"limits.cpu": "1-1"}}
	if err := CheckLimits("p", proj, []Instance{a, b}); err != nil {
		t.Fatalf("two instances of one CPU each against limits.cpu=2: %v", err)
	}
	c := Instance{Name: "c", Config: map[string]string{"limits.cpu": "0-1,1"}}
	if err := CheckLimits("p", proj, []Instance{a, c}); err == nil || !strings.Contains(err.Error(), "limits.cpu") {
		t.Fatalf("three CPUs against limits.cpu=2: %v", err)
	}
}
