package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/filter"
	"github.com/moat/moat/internal/idmap"
	"github.com/moat/moat/internal/instance"
	lxcdriver "github.com/moat/moat/internal/instance/lxc"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/project"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

func instanceURL(project, name string) string {
	u := "/1.0/instances/" + url.PathEscape(name)
	if project != "default" {
		u += "?project=" + url.QueryEscape(project)
	}
	return u
}

func instanceEntity(r *route.Request) authz.Entity {
	return authz.Entity{Type: authz.Instance, Name: r.Var("name"), Project: r.Project}
}

func (d *Daemon) instanceEndpoints() []*route.Endpoint {
	proj := requestProjectEntity
	inst := instanceEntity
	return []*route.Endpoint{
		{Path: "/1.0/instances",
			Get:  &route.Action{Handler: d.getInstances, Entitlement: authz.CanView, Entity: proj, AllProjects: true},
			Post: &route.Action{Handler: d.createInstance, Entitlement: authz.CanCreateInstances, Entity: proj},
		},
		{Path: "/1.0/instances/{name}",
			Get:    &route.Action{Handler: d.getInstance, Entitlement: authz.CanView, Entity: inst},
			Put:    &route.Action{Handler: d.putInstance, Entitlement: authz.CanEdit, Entity: inst},
			Patch:  &route.Action{Handler: d.patchInstance, Entitlement: authz.CanEdit, Entity: inst},
			Post:   &route.Action{Handler: d.renameInstance, Entitlement: authz.CanEdit, Entity: inst},
			Delete: &route.Action{Handler: d.deleteInstance, Entitlement: authz.CanDelete, Entity: inst},
		},
		{Path: "/1.0/instances/{name}/state",
			Get: &route.Action{Handler: d.getInstanceState, Entitlement: authz.CanView, Entity: inst},
			Put: &route.Action{Handler: d.putInstanceState, Entitlement: authz.CanUpdateState, Entity: inst},
		},
		{Path: "/1.0/instances/{name}/exec",
			Post: &route.Action{Handler: d.execInstance, Entitlement: authz.CanExec, Entity: inst},
		},
		{Path: "/1.0/instances/{name}/files",
			Get:    &route.Action{Handler: d.getInstanceFile, Entitlement: authz.CanExec, Entity: inst},
			Post:   &route.Action{Handler: d.postInstanceFile, Entitlement: authz.CanExec, Entity: inst, MaxBody: 1 << 40},
			Delete: &route.Action{Handler: d.deleteInstanceFile, Entitlement: authz.CanExec, Entity: inst},
		},
	}
}

// loadInstance reads an instance with its expanded config and devices.
type loaded struct {
	store.Instance
	EC map[string]string
	ED store.Devices
}

func (d *Daemon) expand(tx *store.Tx, in store.Instance) (loaded, error) {
	pp, err := featureProject(tx, in.Project, "profiles")
	if err != nil {
		return loaded{}, err
	}
	var profiles []store.Profile
	for _, name := range in.Profiles {
		p, err := tx.Profile(pp, name)
		if err != nil {
			return loaded{}, errdefs.NotFoundf("Profile %q not found", name)
		}
		profiles = append(profiles, p)
	}
	ec, ed := instance.Expand(profiles, in.Config, in.Devices)
	return loaded{Instance: in, EC: ec, ED: ed}, nil
}

func (d *Daemon) loadInstance(project, name string) (loaded, error) {
	var l loaded
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		in, err := tx.Instance(project, name)
		if err != nil {
			return err
		}
		l, err = d.expand(tx, in)
		return err
	})
	return l, err
}

// handle returns the driver handle of an instance, building its spec from
// the expanded config and the map recorded for its next start.
func (d *Daemon) handle(l loaded) (*lxcdriver.Container, error) {
	lxcName := d.ct.lxcName(l.Project, l.Name)
	return d.ct.handles.Get(lxcName, func() (lxcdriver.Spec, error) { return d.spec(l) })
}

func (d *Daemon) spec(l loaded) (lxcdriver.Spec, error) {
	var set idmap.Set
	if !config.IsTrue(l.EC["security.privileged"]) {
		var err error
		set, err = idmap.ParseJSON(l.Config["volatile.idmap.next"])
		if err != nil || len(set) == 0 {
			return lxcdriver.Spec{}, fmt.Errorf("instance %s has no valid ID map recorded (volatile.idmap.next)", l.Name)
		}
	}
	// Disk sources are checked again against the project's restrictions.
	var p store.Project
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		var err error
		p, err = tx.Project(l.Project)
		return err
	})
	if err != nil {
		return lxcdriver.Spec{}, err
	}
	lxcName := d.ct.lxcName(l.Project, l.Name)
	return instance.BuildSpec(instance.SpecArgs{
		Name: l.Name, LXCName: lxcName, LXCPath: d.ct.lxcPath, Rootfs: d.ct.pool.Rootfs(lxcName),
		IDMap: set, Config: l.EC, Devices: l.ED, Project: l.Project, ProjectConfig: p.Config,
	})
}

// instanceStatus is the live status without usage counters.
func (d *Daemon) instanceStatus(in store.Instance) (string, error) {
	var l loaded
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		var err error
		l, err = d.expand(tx, in)
		return err
	})
	if err != nil {
		return "", err
	}
	st, err := d.statusOnly(l)
	if err != nil {
		return "", err
	}
	return st.Status, nil
}

func renderInstance(l loaded, st *api.InstanceState) api.Instance {
	status, code := "Stopped", api.Stopped
	if st != nil {
		status, code = st.Status, st.StatusCode
	}
	arch := l.Architecture
	return api.Instance{
		InstancePut: api.InstancePut{
			Architecture: arch, Config: l.Config, Devices: l.Devices, Ephemeral: l.Ephemeral,
			Profiles: l.Profiles, Description: l.Description,
		},
		CreatedAt: l.CreatedAt, LastUsedAt: l.LastUsedAt,
		ExpandedConfig: l.EC, ExpandedDevices: l.ED,
		Name: l.Name, Status: status, StatusCode: code, Location: "none", Type: "container", Project: l.Project,
	}
}

func (d *Daemon) getInstances(r *route.Request) response.Response {
	recursion, fields, err := listRecursion(r)
	if err != nil {
		return response.Error(err)
	}
	flt, err := filter.Parse(r.Query("filter"))
	if err != nil {
		return response.Error(err)
	}
	project := r.Project
	if r.AllProjects {
		project = ""
	}
	list, err := d.listInstances(r, project)
	if err != nil {
		return response.Error(err)
	}
	if recursion == 0 && flt == nil {
		urls := make([]string, 0, len(list))
		for _, l := range list {
			urls = append(urls, instanceURL(l.Project, l.Name))
		}
		return response.Sync(urls, nil)
	}
	if recursion == 1 && flt == nil {
		out := make([]api.Instance, len(list))
		d.forEach(len(list), func(i int) {
			st, _ := d.statusOnly(list[i])
			out[i] = renderInstance(list[i], st)
		})
		return response.Sync(out, nil)
	}
	out := make([]api.InstanceFull, len(list))
	d.forEach(len(list), func(i int) {
		st, err := d.stateOf(list[i], fields == nil || fields["state.network"])
		if err != nil {
			st = &api.InstanceState{Status: "Error", StatusCode: api.Error}
		}
		if fields != nil {
			// Moat does not measure disk usage: the map is empty when
			// asked for, absent when not; so is the network when left out.
			if !fields["state.disk"] {
				st.Disk = nil
			}
			if !fields["state.network"] {
				st.Network = nil
			}
		}
		out[i] = api.InstanceFull{Instance: renderInstance(list[i], st), State: st, Snapshots: []any{}, Backups: []any{}}
	})
	// A filter sees the full object whatever the recursion, and only the
	// objects the caller may see (listInstances dropped the others).
	out, err = filtered(flt, out)
	if err != nil {
		return response.Error(err)
	}
	switch recursion {
	case 0:
		urls := make([]string, 0, len(out))
		for _, in := range out {
			urls = append(urls, instanceURL(in.Project, in.Name))
		}
		return response.Sync(urls, nil)
	case 1:
		short := make([]api.Instance, 0, len(out))
		for _, in := range out {
			short = append(short, in.Instance)
		}
		return response.Sync(short, nil)
	}
	return response.Sync(out, nil)
}

// filtered keeps the instances that match f (all of them when f is nil).
func filtered(f *filter.Filter, objs []api.InstanceFull) ([]api.InstanceFull, error) {
	if f == nil {
		return objs, nil
	}
	out := objs[:0]
	for _, o := range objs {
		ok, err := f.Match(o)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, o)
		}
	}
	return out, nil
}

// stateFields are the expensive parts of an instance's state a
// recursion=2 list may be limited to.
var stateFields = []string{"state.disk", "state.network"}

// listRecursion reads ?recursion=, which for instance lists may carry the
// state fields to compute as "2;fields=state.disk,state.network" (or a
// separate ?fields=). fields is nil when no list was given (everything),
// empty for an empty list (none of the expensive fields).
func listRecursion(r *route.Request) (int, map[string]bool, error) {
	raw, opts, _ := strings.Cut(r.Query("recursion"), ";")
	level := 0
	switch raw {
	case "1":
		level = 1
	case "2":
		level = 2
	}
	list, given := "", false
	if opts != "" {
		v, ok := strings.CutPrefix(opts, "fields=")
		if !ok {
			return 0, nil, errdefs.Invalidf("Invalid recursion option %q: only fields= is supported", opts)
		}
		list, given = v, true
	}
	if q := r.HTTP.URL.Query(); q.Has("fields") {
		if given {
			return 0, nil, errdefs.Invalidf("Invalid fields: give them in recursion= or in fields=, not both")
		}
		list, given = q.Get("fields"), true
	}
	if !given {
		return level, nil, nil
	}
	fields := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(stateFields, f) {
			return 0, nil, errdefs.Invalidf("Invalid fields: unknown field %q (known: %s)", f, strings.Join(stateFields, ", "))
		}
		fields[f] = true
	}
	return level, fields, nil
}

// listInstances reads the instances of project ("" for all) that the
// caller may see, expanded, in one transaction: each project's profiles
// are read once rather than once per instance.
func (d *Daemon) listInstances(r *route.Request, project string) ([]loaded, error) {
	var list []loaded
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		ins, err := tx.Instances(project)
		if err != nil {
			return err
		}
		if len(ins) == 0 && project != "" {
			// Only an empty list can be that of a missing project (a 404).
			if _, err := tx.Project(project); err != nil {
				return err
			}
		}
		profiles := map[string]map[string]store.Profile{} // instance project -> name -> profile
		for _, in := range ins {
			if !authz.CanViewProject(r.Identity, in.Project) {
				continue
			}
			byName, ok := profiles[in.Project]
			if !ok {
				pp, err := featureProject(tx, in.Project, "profiles")
				if err != nil {
					return err
				}
				all, err := tx.Profiles(pp)
				if err != nil {
					return err
				}
				byName = make(map[string]store.Profile, len(all))
				for _, p := range all {
					byName[p.Name] = p
				}
				profiles[in.Project] = byName
			}
			ps := make([]store.Profile, 0, len(in.Profiles))
			for _, name := range in.Profiles {
				p, ok := byName[name]
				if !ok {
					return errdefs.NotFoundf("Profile %q not found", name)
				}
				ps = append(ps, p)
			}
			ec, ed := instance.Expand(ps, in.Config, in.Devices)
			list = append(list, loaded{Instance: in, EC: ec, ED: ed})
		}
		return nil
	})
	return list, err
}

// forEach runs fn for 0..n-1 on up to GOMAXPROCS goroutines: a cached
// state read is a few preads, but the first one of a run asks the
// container's monitor, a few round trips.
func (d *Daemon) forEach(n int, fn func(i int)) {
	if n <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	workers := min(n, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func (d *Daemon) statusOnly(l loaded) (*api.InstanceState, error) {
	return d.stateOf(l, false)
}

func (d *Daemon) getInstance(r *route.Request) response.Response {
	l, err := d.loadInstance(r.Project, r.Var("name"))
	if err != nil {
		return response.Error(err)
	}
	st, err := d.state(l)
	if err != nil {
		return response.Error(err)
	}
	out := renderInstance(l, st)
	if r.Recursion() > 0 {
		return response.Sync(api.InstanceFull{Instance: out, State: st, Snapshots: []any{}, Backups: []any{}}, out.InstancePut)
	}
	return response.Sync(out, out.InstancePut)
}

func (d *Daemon) getInstanceState(r *route.Request) response.Response {
	l, err := d.loadInstance(r.Project, r.Var("name"))
	if err != nil {
		return response.Error(err)
	}
	st, err := d.state(l)
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(st, nil)
}

// checkInstanceConfig is the choke point of every change to an
// instance's effective config: local keys and devices, volatile keys
// (daemon-owned), the expanded result as a whole, and the delegation
// floor for the caller.
func (d *Daemon) checkInstanceConfig(r *route.Request, tx *store.Tx, cur map[string]string, l loaded) error {
	for i, p := range l.Profiles {
		if slices.Contains(l.Profiles[:i], p) {
			return errdefs.Invalidf("Profile %q is listed twice", p)
		}
	}
	for k, v := range l.Config {
		if config.IsVolatile(k) && cur[k] != v {
			return errdefs.Invalidf("Invalid instance configuration key %q: volatile keys are set by Moat, not by users", k)
		}
	}
	for k := range cur {
		if _, kept := l.Config[k]; config.IsVolatile(k) && !kept {
			return errdefs.Invalidf("Invalid instance configuration key %q: volatile keys are set by Moat, not removed by users", k)
		}
	}
	local := maps.Clone(l.Config)
	maps.DeleteFunc(local, func(k, _ string) bool { return config.IsVolatile(k) })
	if err := config.CheckInstanceKeys(local); err != nil {
		return err
	}
	if err := config.CheckDevices(l.Devices); err != nil {
		return err
	}
	ec := maps.Clone(l.EC)
	maps.DeleteFunc(ec, func(k, _ string) bool { return config.IsVolatile(k) })
	if err := config.CheckExpanded(ec, l.ED); err != nil {
		return err
	}
	pools, err := tx.StoragePools()
	if err != nil {
		return err
	}
	poolNames := make([]string, len(pools))
	for i, p := range pools {
		poolNames[i] = p.Name
	}
	if err := config.CheckRootPool(l.ED, poolNames); err != nil {
		return err
	}
	// Project restrictions and the delegation floor (package project).
	p, err := tx.Project(l.Project)
	if err != nil {
		return err
	}
	pol := project.Policy{Project: l.Project, Config: p.Config, Admin: r.Identity.IsAdmin()}
	if err := pol.CheckInstance(l.Name, l.EC, l.ED); err != nil {
		return err
	}
	return d.checkInstanceLimits(tx, p, l)
}

// allocations lists the isolated blocks of every instance but skip. A
// block's size is the expanded security.idmap.size (a profile may set it),
// so instances are expanded, each profile read once.
func allocations(tx *store.Tx, skipProject, skipName string) ([]instance.Allocation, error) {
	all, err := tx.Instances("")
	if err != nil {
		return nil, err
	}
	profileProject := map[string]string{}
	profiles := map[[2]string]store.Profile{}
	var out []instance.Allocation
	for _, in := range all {
		if in.Project == skipProject && in.Name == skipName {
			continue
		}
		if _, ok := instance.AllocationOf(in.Config); !ok {
			continue // no block recorded, whatever the profiles say
		}
		pp, ok := profileProject[in.Project]
		if !ok {
			if pp, err = featureProject(tx, in.Project, "profiles"); err != nil {
				return nil, err
			}
			profileProject[in.Project] = pp
		}
		var ps []store.Profile
		for _, name := range in.Profiles {
			p, ok := profiles[[2]string{pp, name}]
			if !ok {
				if p, err = tx.Profile(pp, name); err != nil {
					return nil, err
				}
				profiles[[2]string{pp, name}] = p
			}
			ps = append(ps, p)
		}
		ec, _ := instance.Expand(ps, in.Config, nil)
		if a, ok := instance.AllocationOf(ec); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// assignIDMap computes the instance's map and records it in volatile keys
// (applied at next start). It must run in the transaction that stores the
// instance, with allocMu held.
func (d *Daemon) assignIDMap(tx *store.Tx, l *loaded) error {
	if d.ct.hostErr != nil && !config.IsTrue(l.EC["security.privileged"]) {
		return fmt.Errorf("unprivileged containers need a host ID range: %w", d.ct.hostErr)
	}
	others, err := allocations(tx, l.Project, l.Name)
	if err != nil {
		return err
	}
	var cur *instance.Allocation
	if a, ok := instance.AllocationOf(l.EC); ok {
		cur = &a
	}
	set, base, err := instance.ComputeIDMap(d.ct.host, l.EC, cur, others)
	if err != nil {
		return err
	}
	if err := d.keepRunningIDs(l, set); err != nil {
		return err
	}
	if err := instance.CheckDeviceOwners(set, l.ED); err != nil {
		return err
	}
	if set == nil {
		delete(l.Config, "volatile.idmap.next")
		l.Config["volatile.idmap.base"] = "0"
	} else {
		l.Config["volatile.idmap.next"] = set.JSON()
		l.Config["volatile.idmap.base"] = strconv.FormatInt(base, 10)
	}
	l.EC = maps.Clone(l.EC)
	for _, k := range []string{"volatile.idmap.next", "volatile.idmap.base"} {
		if v, ok := l.Config[k]; ok {
			l.EC[k] = v
		} else {
			delete(l.EC, k)
		}
	}
	return nil
}

// keepRunningIDs refuses a new map that would move a running container
// off the subordinate host IDs it runs with. The map applies at the next
// start, but the allocator hands out blocks from the recorded config, so
// the running container's block would be free for the next isolated
// container while this one still runs with it: two running containers
// sharing host IDs.
func (d *Daemon) keepRunningIDs(l *loaded, next idmap.Set) error {
	if l.Config["volatile.last_state.power"] != "RUNNING" {
		return nil
	}
	running, err := idmap.ParseJSON(l.Config["volatile.idmap.current"])
	if err != nil {
		return fmt.Errorf("instance %q: volatile.idmap.current: %w", l.Name, err)
	}
	sub := d.ct.host.Allocatable()
	lo, hi := subordinateExtent(running, sub)
	if nlo, nhi := subordinateExtent(next, sub); nlo != lo || nhi != hi {
		return errdefs.Invalidf("Instance %q is running with host IDs %d-%d: a change of security.idmap.*, security.privileged or raw.idmap that moves them needs the instance stopped first",
			l.Name, lo, hi-1)
	}
	return nil
}

// subordinateExtent is the span [lo, hi) of host uids in sub that s maps;
// 0, 0 when it maps none (privileged). raw.idmap entries map host ids
// outside sub and do not count.
func subordinateExtent(s idmap.Set, sub idmap.Range) (lo, hi int64) {
	for _, e := range s {
		if !e.Isuid {
			continue
		}
		a, b := max(e.Hostid, sub.Base), min(e.Hostid+e.Maprange, sub.End())
		if a >= b {
			continue
		}
		if hi == 0 || a < lo {
			lo = a
		}
		hi = max(hi, b)
	}
	return lo, hi
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (d *Daemon) createInstance(r *route.Request) response.Response {
	var req api.InstancesPost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if req.Name == "" {
		req.Name = randomName()
	}
	if err := instance.ValidName(req.Name); err != nil {
		return response.Error(err)
	}
	if req.Type != "" && req.Type != "container" {
		return response.Error(errdefs.Invalidf("Invalid instance type %q: Moat runs containers only", req.Type))
	}
	if req.Source.Type != "image" {
		return response.Error(errdefs.Invalidf("Invalid source type %q: only \"image\" (a local image) is supported", req.Source.Type))
	}
	if req.Source.Server != "" {
		return response.Error(errdefs.Invalidf("Remote image servers are not supported: import the image first"))
	}
	if req.Profiles == nil {
		req.Profiles = []string{"default"}
	}
	cfg := config.Normalize(req.Config)
	for k := range cfg {
		if config.IsVolatile(k) {
			return response.Error(errdefs.Invalidf("Invalid instance configuration key %q: volatile keys are set by Moat, not by users", k))
		}
	}
	if req.Devices == nil {
		req.Devices = map[string]map[string]string{}
	}
	project := r.Project
	var img store.Image
	var l loaded
	prepare := func(tx *store.Tx) error {
		if _, err := tx.Instance(project, req.Name); err == nil {
			return errdefs.Conflictf("Instance %q already exists", req.Name)
		}
		ip, err := featureProject(tx, project, "images")
		if err != nil {
			return err
		}
		fp := req.Source.Fingerprint
		if req.Source.Alias != "" {
			a, err := tx.ImageAlias(ip, req.Source.Alias)
			if err != nil {
				return errdefs.NotFoundf("Image alias %q not found", req.Source.Alias)
			}
			fp = a.Fingerprint
		}
		if fp == "" {
			return errdefs.Invalidf("The image source needs an alias or a fingerprint")
		}
		img, err = tx.Image(ip, fp)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.NotFoundf("Image %q not found", fp)
		}
		if err != nil {
			return err // an ambiguous prefix is a 400 naming it
		}
		full := maps.Clone(cfg)
		for k, v := range img.Properties {
			full["image."+k] = v
		}
		full["volatile.base_image"] = img.Fingerprint
		full["volatile.uuid"] = newUUID()
		l, err = d.expand(tx, store.Instance{
			Project: project, Name: req.Name, Type: "container", Architecture: img.Architecture,
			Description: req.Description, Ephemeral: req.Ephemeral, Profiles: req.Profiles,
			Config: full, Devices: req.Devices,
		})
		if err != nil {
			return err
		}
		if err := d.checkInstanceConfig(r, tx, full, l); err != nil {
			return err
		}
		return d.assignIDMap(tx, &l)
	}
	// Everything that can be checked is checked before the operation, so
	// bad input is a 4xx and no operation.
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		if pp, err := featureProject(tx, project, "profiles"); err == nil && pp == project {
			if err := ensureDefaultProfile(tx, project); err != nil {
				return err
			}
		}
		return prepare(tx)
	})
	if err != nil {
		return response.Error(err)
	}
	requestor := r.Identity.Requestor()
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: "Creating instance", Project: project,
		Resources: map[string][]string{"instances": {instanceURL(project, req.Name)}}, Creator: r.Identity,
		Run: func(ctx context.Context, _ *operation.Operation) error {
			if err := d.doCreate(r, prepare, &l, &img); err != nil {
				return err
			}
			d.bus.Lifecycle("instance-created", instanceURL(project, req.Name), project, requestor,
				map[string]any{"type": "container", "storage-pool": d.ct.pool.Name})
			if req.Start {
				return d.startInstance(project, req.Name, requestor)
			}
			return nil
		},
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

// doCreate makes the instance: storage first (staged and renamed into
// place, then mounted), then the database row. The row is the commit
// point: a crash before it leaves storage that the next start removes
// (unmounting it first); after it, a complete instance.
func (d *Daemon) doCreate(r *route.Request, prepare func(*store.Tx) error, l *loaded, img *store.Image) error {
	d.ct.allocMu.Lock()
	defer d.ct.allocMu.Unlock()
	// Re-check and re-allocate: another create may have run since.
	var fresh loaded
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		if err := prepare(tx); err != nil {
			return err
		}
		fresh = *l
		return nil
	})
	if err != nil {
		return err
	}
	*l = fresh
	set, _ := idmap.ParseJSON(l.Config["volatile.idmap.next"])
	lxcName := d.ct.lxcName(l.Project, l.Name)
	// The image's files must outlive the instance row's commit: a delete
	// of the image meanwhile prunes its files only once it sees no
	// instance using them, and Use keeps it waiting until then.
	return d.ct.images.Use(img.Fingerprint, func() error {
		// An overlay over the image: empty layers and one mount,
		// whatever the image's size.
		if err := d.ct.pool.CreateContainer(lxcName, d.ct.images.Rootfs(img.Fingerprint), set); err != nil {
			return err
		}
		now := time.Now().UTC()
		l.CreatedAt = now
		err := d.store.Update(context.Background(), func(tx *store.Tx) error {
			img.LastUsedAt = now
			if err := tx.UpdateImage(*img); err != nil {
				return err
			}
			return tx.CreateInstance(l.Instance)
		})
		if err != nil {
			_ = d.ct.pool.DeleteContainer(lxcName)
		}
		return err
	})
}

// startInstance starts a stopped instance.
func (d *Daemon) startInstance(project, name string, requestor *api.Requestor) error {
	mu := d.ct.instLock(project, name)
	mu.Lock()
	defer mu.Unlock()
	return d.startLocked(project, name, requestor)
}

func (d *Daemon) startLocked(project, name string, requestor *api.Requestor) error {
	l, err := d.loadInstance(project, name)
	if err != nil {
		return err
	}
	lxcName := d.ct.lxcName(project, name)
	d.ct.handles.Forget(lxcName)
	spec, err := d.spec(l)
	if err != nil {
		return err
	}
	// The overlay shows the image and the upper layer through this
	// start's map. A changed map shifts the upper layer first, which must
	// never happen under a running container.
	if cur, err := d.ct.pool.LayerMap(lxcName); err == nil && cur.JSON() != spec.IDMap.JSON() {
		if st, _ := d.statusOnly(l); st != nil && st.Status != "Stopped" {
			return errdefs.Invalidf("The instance is already running")
		}
	}
	if err := d.ct.pool.Mount(lxcName, d.ct.images.Rootfs(l.Config["volatile.base_image"]), spec.IDMap); err != nil {
		return err
	}
	uid, gid := 0, 0
	if !spec.Privileged {
		uid, gid = instance.RootOwner(spec.IDMap)
	}
	if err := d.ct.pool.SetOwner(lxcName, uid, gid); err != nil {
		return err
	}
	h, err := d.handle(l)
	if err != nil {
		return err
	}
	if err := h.Start(); err != nil {
		if errors.Is(err, lxcdriver.ErrRunning) {
			return errdefs.Invalidf("The instance is already running")
		}
		return err
	}
	d.watchInit(project, name, h)
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		in, err := tx.Instance(project, name)
		if err != nil {
			return err
		}
		in.Config["volatile.last_state.power"] = "RUNNING"
		if next, ok := in.Config["volatile.idmap.next"]; ok {
			in.Config["volatile.idmap.current"] = next
		} else {
			delete(in.Config, "volatile.idmap.current")
		}
		// The map the upper layer is written with (host ids, shifted).
		in.Config["volatile.last_state.idmap"] = spec.IDMap.JSON()
		in.LastUsedAt = time.Now().UTC()
		return tx.UpdateInstance(in)
	})
	if err != nil {
		return err
	}
	d.bus.Lifecycle("instance-started", instanceURL(project, name), project, requestor, nil)
	return nil
}

func (d *Daemon) stopLocked(l loaded, force bool, timeout time.Duration, requestor *api.Requestor, event bool) error {
	h, err := d.handle(l)
	if err != nil {
		return err
	}
	err = h.Stop(force, timeout)
	action := "instance-shutdown"
	if force {
		action = "instance-stopped"
	}
	switch {
	case errors.Is(err, lxcdriver.ErrNotRunning):
		return errdefs.Invalidf("The instance is already stopped")
	case errors.Is(err, lxcdriver.ErrTimeout):
		return errdefs.Invalidf("The instance did not stop within %s: retry with force", timeout)
	case errors.Is(err, lxcdriver.ErrStopForced):
		action = "instance-stopped" // a forced stop cut this one short
	case err != nil:
		return err
	}
	return d.recordStopped(l, action, requestor, event)
}

// lockForForce takes an instance's lock for a forced stop or delete. A
// clean stop holding it may wait for init without end (no timeout, or an
// init that ignores the halt signal), so instead of queueing behind it the
// forced one cuts it short, which makes it kill the container and let go
// of the lock. cutShort reports whether that happened: the instance is
// then already stopped and its stop recorded.
func (d *Daemon) lockForForce(l loaded) (unlock func(), cutShort bool) {
	mu := d.ct.instLock(l.Project, l.Name)
	// Polling the lock is what lets a forced stop that arrives just before
	// the clean one starts waiting still reach it. The handle is looked up
	// each time: an update holding the lock may replace it, and the clean
	// stop then waits on the new one.
	for !mu.TryLock() {
		if h, err := d.handle(l); err == nil && h.AbortStop() {
			cutShort = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return mu.Unlock, cutShort
}

// recordStopped is the bookkeeping after a container stopped, whoever
// stopped it: an ephemeral one is deleted, any other has its power state
// recorded; then the lifecycle events, if wanted.
func (d *Daemon) recordStopped(l loaded, action string, requestor *api.Requestor, event bool) error {
	url := instanceURL(l.Project, l.Name)
	if l.Ephemeral {
		if err := d.removeInstance(context.Background(), l.Instance); err != nil {
			return err
		}
		if event {
			d.bus.Lifecycle(action, url, l.Project, requestor, nil)
			d.bus.Lifecycle("instance-deleted", url, l.Project, requestor, nil)
		}
		return nil
	}
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		in, err := tx.Instance(l.Project, l.Name)
		if err != nil {
			return err
		}
		in.Config["volatile.last_state.power"] = "STOPPED"
		return tx.UpdateInstance(in)
	})
	if err != nil {
		return err
	}
	if event {
		d.bus.Lifecycle(action, url, l.Project, requestor, nil)
	}
	return nil
}

func (d *Daemon) putInstanceState(r *route.Request) response.Response {
	var req api.InstanceStatePut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	project, name := r.Project, r.Var("name")
	l, err := d.loadInstance(project, name)
	if err != nil {
		return response.Error(err)
	}
	timeout := time.Duration(req.Timeout) * time.Second
	if req.Timeout < 0 {
		timeout = 0
	}
	if req.Stateful {
		return response.Error(errdefs.Invalidf("Stateful stop and start are not supported"))
	}
	requestor := r.Identity.Requestor()
	var desc string
	var run func() error
	lockDo := func(f func() error) error {
		mu := d.ct.instLock(project, name)
		mu.Lock()
		defer mu.Unlock()
		return f()
	}
	switch req.Action {
	case "start":
		desc = "Starting instance"
		run = func() error { return d.startInstance(project, name, requestor) }
	case "stop":
		desc = "Stopping instance"
		run = func() error {
			if !req.Force {
				return lockDo(func() error {
					l, err := d.loadInstance(project, name)
					if err != nil {
						return err
					}
					return d.stopLocked(l, false, timeout, requestor, true)
				})
			}
			unlock, cutShort := d.lockForForce(l)
			defer unlock()
			l, err := d.loadInstance(project, name)
			if cutShort && (errors.Is(err, errdefs.ErrNotFound) || err == nil && l.Config["volatile.last_state.power"] == "STOPPED") {
				return nil // the clean stop it cut short recorded the stop (or deleted an ephemeral one)
			}
			if err != nil {
				return err
			}
			return d.stopLocked(l, true, timeout, requestor, true)
		}
	case "restart":
		desc = "Restarting instance"
		run = func() error {
			var unlock func()
			cutShort := false
			if req.Force {
				unlock, cutShort = d.lockForForce(l)
			} else {
				mu := d.ct.instLock(project, name)
				mu.Lock()
				unlock = mu.Unlock
			}
			defer unlock()
			l, err := d.loadInstance(project, name)
			if err != nil {
				return err
			}
			l.Ephemeral = false // a restart does not delete an ephemeral instance
			stopped := cutShort && l.Config["volatile.last_state.power"] == "STOPPED"
			if !stopped {
				if err := d.stopLocked(l, req.Force, timeout, requestor, false); err != nil {
					return err
				}
			}
			if err := d.startLocked(project, name, requestor); err != nil {
				return err
			}
			d.bus.Lifecycle("instance-restarted", instanceURL(project, name), project, requestor, nil)
			return nil
		}
	case "freeze", "unfreeze":
		desc = "Freezing instance"
		if req.Action == "unfreeze" {
			desc = "Unfreezing instance"
		}
		run = func() error {
			return lockDo(func() error {
				h, err := d.handle(l)
				if err != nil {
					return err
				}
				action := "instance-paused"
				if req.Action == "freeze" {
					err = h.Freeze()
				} else {
					err, action = h.Unfreeze(), "instance-resumed"
				}
				if errors.Is(err, lxcdriver.ErrNotRunning) {
					return errdefs.Invalidf("The instance is not running")
				}
				if err != nil {
					return err
				}
				d.bus.Lifecycle(action, instanceURL(project, name), project, requestor, nil)
				return nil
			})
		}
	default:
		return response.Error(errdefs.Invalidf("Invalid action %q: use start, stop, restart, freeze or unfreeze", req.Action))
	}
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: desc, Project: project,
		Resources: map[string][]string{"instances": {instanceURL(project, name)}}, Creator: r.Identity,
		Run: func(ctx context.Context, _ *operation.Operation) error { return run() },
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

// instancePatch is a PATCH body.
type instancePatch struct {
	Config      map[string]string            `json:"config"`
	Devices     map[string]map[string]string `json:"devices"`
	Profiles    []string                     `json:"profiles"`
	Ephemeral   *bool                        `json:"ephemeral"`
	Description *string                      `json:"description"`
}

func (d *Daemon) putInstance(r *route.Request) response.Response {
	var req api.InstancePut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateInstance(r, func(cur store.Instance) store.Instance {
		next := cur
		cfg := config.Normalize(req.Config)
		// Volatile keys a client did not echo back are kept.
		for k, v := range cur.Config {
			if _, set := cfg[k]; config.IsVolatile(k) && !set {
				cfg[k] = v
			}
		}
		next.Config, next.Devices, next.Description, next.Ephemeral = cfg, req.Devices, req.Description, req.Ephemeral
		if next.Devices == nil {
			next.Devices = store.Devices{}
		}
		next.Profiles = req.Profiles
		if next.Profiles == nil {
			next.Profiles = []string{}
		}
		return next
	})
}

func (d *Daemon) patchInstance(r *route.Request) response.Response {
	var req instancePatch
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateInstance(r, func(cur store.Instance) store.Instance {
		next := cur
		next.Config = config.Merge(cur.Config, req.Config)
		next.Devices = maps.Clone(cur.Devices)
		for n, dev := range req.Devices {
			next.Devices[n] = dev
		}
		if req.Profiles != nil {
			next.Profiles = req.Profiles
		}
		if req.Ephemeral != nil {
			next.Ephemeral = *req.Ephemeral
		}
		if req.Description != nil {
			next.Description = *req.Description
		}
		return next
	})
}

// updateInstance is the one path that changes an instance's config,
// devices and profiles: ETag, the config choke point, ID map, store, live
// application of limits.
func (d *Daemon) updateInstance(r *route.Request, next func(store.Instance) store.Instance) response.Response {
	project, name := r.Project, r.Var("name")
	mu := d.ct.instLock(project, name)
	mu.Lock()
	defer mu.Unlock()
	d.ct.allocMu.Lock()
	defer d.ct.allocMu.Unlock()
	var l loaded
	var old loaded
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		cur, err := tx.Instance(project, name)
		if err != nil {
			return err
		}
		if old, err = d.expand(tx, cur); err != nil {
			return err
		}
		if err := r.CheckETag(renderInstance(old, nil).InstancePut); err != nil {
			return err
		}
		n := next(cur)
		if l, err = d.expand(tx, n); err != nil {
			return errdefs.Invalidf("%v", err)
		}
		if err := d.checkInstanceConfig(r, tx, cur.Config, l); err != nil {
			return err
		}
		if err := d.assignIDMap(tx, &l); err != nil {
			return err
		}
		return tx.UpdateInstance(l.Instance)
	})
	if err != nil {
		return response.Error(err)
	}
	// The change is stored whether or not it applies live: the event says
	// so even when applying it to the running container failed.
	d.bus.Lifecycle("instance-updated", instanceURL(project, name), project, r.Identity.Requestor(), nil)
	if err := d.applyLive(old, l); err != nil {
		return response.Error(err)
	}
	// LXD clients expect an operation; the change is already applied, so
	// errors above are plain 4xx responses.
	return d.doneOperation(r, "Updating instance", project, map[string][]string{"instances": {instanceURL(project, name)}})
}

// doneOperation returns an operation for work that already happened.
func (d *Daemon) doneOperation(r *route.Request, desc, project string, resources map[string][]string) response.Response {
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: desc, Project: project, Resources: resources, Creator: r.Identity,
		Run: func(context.Context, *operation.Operation) error { return nil },
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

// applyLive replaces the driver handle with one for the new config and
// applies limits and disk and unix-char/unix-block devices to a running
// container. A device change that cannot be applied is undone and stays
// stored for the next start, as do changes of the ID map or privilege.
func (d *Daemon) applyLive(old, l loaded) error {
	lxcName := d.ct.lxcName(l.Project, l.Name)
	// The cached handle describes what runs. It is replaced only once the
	// change is applied: both updates apply all or nothing, so after a
	// failure the container still runs as h says, and the next live
	// change is worked out from that. (A start builds a handle from the
	// stored config anyway.)
	h, err := d.handle(old)
	if err != nil {
		d.ct.handles.Forget(lxcName)
		return nil
	}
	if st, err := h.StateWithoutNetwork(); err != nil || st.Status == lxcdriver.StatusStopped {
		d.ct.handles.Forget(lxcName)
		return nil
	}
	spec, err := d.spec(l)
	if err != nil {
		return fmt.Errorf("config stored; it applies at the next start: %w", err)
	}
	nh, err := lxcdriver.New(spec)
	if err != nil {
		return fmt.Errorf("config stored; it applies at the next start: %w", err)
	}
	if err := nh.UpdateLimits(instance.Limits(l.EC)); err != nil && !errors.Is(err, lxcdriver.ErrNotRunning) {
		nh.Close()
		return fmt.Errorf("config stored, applying limits to the running container failed: %w", err)
	}
	if err := nh.UpdateDevices(h); err != nil && !errors.Is(err, lxcdriver.ErrNotRunning) {
		nh.Close()
		return fmt.Errorf("config stored; it applies at the next start: %w", err)
	}
	d.ct.handles.Replace(lxcName, nh)
	return nil
}

func (d *Daemon) renameInstance(r *route.Request) response.Response {
	var req api.InstancePost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if req.Migration {
		return response.Error(errdefs.NotImplementedf("Migration is not supported"))
	}
	project, from := r.Project, r.Var("name")
	if err := instance.ValidName(req.Name); err != nil {
		return response.Error(err)
	}
	l, err := d.loadInstance(project, from)
	if err != nil {
		return response.Error(err)
	}
	if st, _ := d.statusOnly(l); st != nil && st.Status != "Stopped" {
		return response.Error(errdefs.Invalidf("Renaming of running instance not allowed"))
	}
	if _, err := d.loadInstance(project, req.Name); err == nil {
		return response.Error(errdefs.Conflictf("Instance %q already exists", req.Name))
	}
	requestor := r.Identity.Requestor()
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: "Renaming instance", Project: project,
		Resources: map[string][]string{"instances": {instanceURL(project, from)}}, Creator: r.Identity,
		Run: func(ctx context.Context, _ *operation.Operation) error {
			mu := d.ct.instLock(project, from)
			mu.Lock()
			defer mu.Unlock()
			oldLXC, newLXC := d.ct.lxcName(project, from), d.ct.lxcName(project, req.Name)
			if h, err := d.handle(l); err == nil {
				if err := h.Delete(); err != nil {
					return err
				}
			}
			d.ct.handles.Forget(oldLXC)
			// The row is renamed first and the storage then moved, with
			// the rename recorded in the pool meanwhile: a crash at any
			// point leaves the instance whole under one of the two names
			// (storage.Dir.RecoverRenames).
			lower := d.ct.images.Rootfs(l.Config["volatile.base_image"])
			if err := d.ct.pool.BeginRename(oldLXC, newLXC); err != nil {
				return err
			}
			// The record goes once row and storage agree again; if they
			// may not, it stays for the next start to finish the move.
			keepRecord := false
			defer func() {
				if !keepRecord {
					d.ct.pool.EndRename(newLXC)
				}
			}()
			err := d.store.Update(ctx, func(tx *store.Tx) error {
				// The new name changes nothing the config check looks at;
				// expanding proves the instance's profiles still resolve.
				in, err := tx.Instance(project, from)
				if err != nil {
					return err
				}
				if _, err := d.expand(tx, in); err != nil {
					return err
				}
				return tx.RenameInstance(project, from, req.Name)
			})
			if err != nil {
				return err
			}
			// The overlay is unmounted for the move and mounted again at
			// the new path, whichever name the instance ends up with.
			if err := d.ct.pool.RenameContainer(oldLXC, newLXC); err != nil {
				back := d.store.Update(ctx, func(tx *store.Tx) error { return tx.RenameInstance(project, req.Name, from) })
				keepRecord = back != nil
				_, merr := d.ct.pool.EnsureMounted(oldLXC, lower)
				return errors.Join(err, back, merr)
			}
			if _, err := d.ct.pool.EnsureMounted(newLXC, lower); err != nil {
				return err
			}
			d.bus.Lifecycle("instance-renamed", instanceURL(project, req.Name), project, requestor, map[string]any{"old_name": from})
			return nil
		},
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

func (d *Daemon) deleteInstance(r *route.Request) response.Response {
	project, name := r.Project, r.Var("name")
	force, _ := config.ParseBool(r.Query("force"))
	l, err := d.loadInstance(project, name)
	if err != nil {
		return response.Error(err)
	}
	if config.IsTrue(l.EC["security.protection.delete"]) {
		return response.Error(errdefs.Invalidf("Instance %q is protected from deletion (security.protection.delete=true)", name))
	}
	if st, _ := d.statusOnly(l); st != nil && st.Status != "Stopped" && !force {
		return response.Error(errdefs.Invalidf("Instance is running: stop it first or use force"))
	}
	requestor := r.Identity.Requestor()
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: "Deleting instance", Project: project,
		Resources: map[string][]string{"instances": {instanceURL(project, name)}}, Creator: r.Identity,
		Run: func(ctx context.Context, _ *operation.Operation) error {
			unlock, _ := d.lockForForce(l)
			defer unlock()
			l, err := d.loadInstance(project, name)
			if err != nil {
				return err
			}
			if h, err := d.handle(l); err == nil {
				err := h.Stop(true, 0)
				if err != nil && !errors.Is(err, lxcdriver.ErrNotRunning) {
					return err
				}
				if err == nil {
					d.bus.Lifecycle("instance-stopped", instanceURL(project, name), project, requestor, nil)
				}
			}
			if err := d.removeInstance(ctx, l.Instance); err != nil {
				return err
			}
			d.bus.Lifecycle("instance-deleted", instanceURL(project, name), project, requestor, nil)
			return nil
		},
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

// removeInstance deletes a stopped instance: the row first (the commit
// point), then the driver dir and cgroups, then storage (unmounted first),
// then the files of its image if the image was deleted meanwhile and no
// other instance uses them.
func (d *Daemon) removeInstance(ctx context.Context, in store.Instance) error {
	if err := d.store.Update(ctx, func(tx *store.Tx) error { return tx.DeleteInstance(in.Project, in.Name) }); err != nil {
		return err
	}
	lxcName := d.ct.lxcName(in.Project, in.Name)
	var errs []error
	if h, err := d.handle(loaded{Instance: in, EC: in.Config, ED: in.Devices}); err == nil {
		errs = append(errs, h.Delete())
	} else {
		errs = append(errs, os.RemoveAll(d.ct.lxcPath+"/"+lxcName))
	}
	d.ct.handles.Forget(lxcName)
	if err := d.ct.pool.DeleteContainer(lxcName); err != nil {
		errs = append(errs, err)
	} else {
		d.pruneImage(in.Config["volatile.base_image"])
	}
	d.removeExecLogs(in)
	return errors.Join(errs...)
}
