package project

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
)

// Instance is what limits need to know about an instance: its name and its
// expanded config (profiles applied).
type Instance struct {
	Name   string
	Config map[string]string
}

// aggregateKeys are the instance limits a project can cap in total.
var aggregateKeys = []string{"limits.cpu", "limits.memory", "limits.processes"}

// HostMemory is the memory that percentage limits are taken of.
var HostMemory = hostMemory()

// CheckLimits checks a project's instances (with the change applied)
// against its limits. When the project caps an aggregate, every instance
// must set that limit itself or through a profile, so nothing escapes the
// total. The error wraps errdefs.ErrInvalid.
func CheckLimits(projectName string, projectCfg map[string]string, instances []Instance) error {
	for _, k := range []string{"limits.instances", "limits.containers"} {
		if v := projectCfg[k]; v != "" {
			n, _ := strconv.Atoi(v)
			if len(instances) > n {
				return errdefs.Invalidf("Project %q is limited to %d instances (%s=%s)", projectName, n, k, v)
			}
		}
	}
	usage, err := Usage(projectCfg, instances)
	if err != nil {
		return err
	}
	for _, k := range aggregateKeys {
		if projectCfg[k] == "" {
			continue
		}
		for _, inst := range instances {
			if inst.Config[k] == "" {
				return errdefs.Invalidf("Instance %q in project %q has no %q config, either directly or via a profile", inst.Name, projectName, k)
			}
		}
		r := usage[strings.TrimPrefix(k, "limits.")]
		if r.Usage > r.Limit {
			return errdefs.Invalidf("Project %q would use %d of its %s limit of %s (%s)", projectName, r.Usage, k, projectCfg[k], usageUnit(k))
		}
	}
	return nil
}

func usageUnit(k string) string {
	switch k {
	case "limits.memory":
		return "bytes"
	case "limits.cpu":
		return "CPUs"
	}
	return "processes"
}

// Usage returns the project's resources as GET /1.0/projects/{name}/state
// reports them; a Limit of -1 means no limit.
func Usage(projectCfg map[string]string, instances []Instance) (map[string]api.ProjectStateResource, error) {
	out := map[string]api.ProjectStateResource{}
	limit := func(k string, parse func(string) (int64, error)) (int64, error) {
		v := projectCfg[k]
		if v == "" {
			return -1, nil
		}
		return parse(v)
	}
	atoi := func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }
	bytes := func(v string) (int64, error) { n, err := config.ParseByteSize(v); return int64(n), err }

	n := int64(len(instances))
	for _, k := range []string{"instances", "containers"} {
		l, err := limit("limits."+k, atoi)
		if err != nil {
			return nil, err
		}
		out[k] = api.ProjectStateResource{Limit: l, Usage: n}
	}
	var cpu, mem, procs int64
	for _, inst := range instances {
		c, err := config.CPUCount(inst.Config["limits.cpu"])
		if err != nil {
			return nil, fmt.Errorf("instance %q: %w", inst.Name, err)
		}
		m, err := memoryBytes(inst.Config["limits.memory"])
		if err != nil {
			return nil, fmt.Errorf("instance %q: %w", inst.Name, err)
		}
		p, _ := strconv.ParseInt(inst.Config["limits.processes"], 10, 64)
		cpu, mem, procs = cpu+c, mem+m, procs+p
	}
	for k, v := range map[string]struct {
		usage int64
		parse func(string) (int64, error)
	}{"cpu": {cpu, atoi}, "memory": {mem, bytes}, "processes": {procs, atoi}} {
		l, err := limit("limits."+k, v.parse)
		if err != nil {
			return nil, err
		}
		out[k] = api.ProjectStateResource{Limit: l, Usage: v.usage}
	}
	return out, nil
}

func memoryBytes(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		pct, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad limits.memory %q", v)
		}
		return HostMemory * pct / 100, nil
	}
	n, err := config.ParseByteSize(v)
	return int64(n), err
}
