package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/project"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

func profileURL(project, name string) string {
	u := "/1.0/profiles/" + url.PathEscape(name)
	if project != "default" {
		u += "?project=" + url.QueryEscape(project)
	}
	return u
}

func profileEntity(r *route.Request) authz.Entity {
	return authz.Entity{Type: authz.Profile, Name: r.Var("name"), Project: r.Project}
}

func (d *Daemon) profileEndpoints() []*route.Endpoint {
	proj := requestProjectEntity
	return []*route.Endpoint{
		{Path: "/1.0/profiles",
			Get:  &route.Action{Handler: d.getProfiles, Entitlement: authz.CanView, Entity: proj},
			Post: &route.Action{Handler: d.createProfile, Entitlement: authz.CanCreateProfiles, Entity: proj},
		},
		{Path: "/1.0/profiles/{name}",
			Get:    &route.Action{Handler: d.getProfile, Entitlement: authz.CanView, Entity: profileEntity},
			Put:    &route.Action{Handler: d.putProfile, Entitlement: authz.CanEdit, Entity: profileEntity},
			Patch:  &route.Action{Handler: d.patchProfile, Entitlement: authz.CanEdit, Entity: profileEntity},
			Post:   &route.Action{Handler: d.renameProfile, Entitlement: authz.CanEdit, Entity: profileEntity},
			Delete: &route.Action{Handler: d.deleteProfile, Entitlement: authz.CanDelete, Entity: profileEntity},
		},
	}
}

// profileProject returns the project whose profiles requests on project
// use. A project gets its own default profile on first use (it may be
// created with features.profiles or switched to it later), so only the
// request that finds it missing takes a write transaction.
func (d *Daemon) profileProject(project string) (string, error) {
	var pp string
	resolve := func(tx *store.Tx) error {
		var err error
		pp, err = featureProject(tx, project, "profiles")
		return err
	}
	missing := false
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		if err := resolve(tx); err != nil {
			return err
		}
		_, err := tx.Profile(pp, "default")
		if errors.Is(err, errdefs.ErrNotFound) {
			missing = true
			return nil
		}
		return err
	})
	if err != nil || !missing {
		return pp, err
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		if err := resolve(tx); err != nil {
			return err
		}
		return ensureDefaultProfile(tx, pp)
	})
	return pp, err
}

// profileUsers lists the instances using a profile (in every project that
// takes its profiles from pp).
func (d *Daemon) profileUsers(tx *store.Tx, pp, name string) ([]store.Instance, error) {
	all, err := tx.Instances("")
	if err != nil {
		return nil, err
	}
	var out []store.Instance
	for _, in := range all {
		ip, err := featureProject(tx, in.Project, "profiles")
		if err != nil || ip != pp {
			continue
		}
		if slices.Contains(in.Profiles, name) {
			out = append(out, in)
		}
	}
	return out, nil
}

// renderProfile shows a profile to id. The default project's profiles
// serve every project without features.profiles, so used_by names only
// the instances in projects id may see.
func (d *Daemon) renderProfile(tx *store.Tx, f store.Profile, id *identity.Identity) (api.Profile, error) {
	users, err := d.profileUsers(tx, f.Project, f.Name)
	if err != nil {
		return api.Profile{}, err
	}
	used, _ := visibleUsers(users, id)
	return api.Profile{ProfilePut: api.ProfilePut{Config: f.Config, Description: f.Description, Devices: f.Devices},
		Name: f.Name, UsedBy: used, Project: f.Project}, nil
}

// visibleUsers lists the URLs of the instances in users that id may see,
// and counts the others.
func visibleUsers(users []store.Instance, id *identity.Identity) (urls []string, hidden int) {
	urls = []string{}
	for _, in := range users {
		if authz.CanViewProject(id, in.Project) {
			urls = append(urls, instanceURL(in.Project, in.Name))
		} else {
			hidden++
		}
	}
	return urls, hidden
}

func (d *Daemon) getProfiles(r *route.Request) response.Response {
	pp, err := d.profileProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	var out []api.Profile
	err = d.store.View(context.Background(), func(tx *store.Tx) error {
		list, err := tx.Profiles(pp)
		if err != nil {
			return err
		}
		for _, f := range list {
			ap, err := d.renderProfile(tx, f, r.Identity)
			if err != nil {
				return err
			}
			out = append(out, ap)
		}
		return nil
	})
	if err != nil {
		return response.Error(err)
	}
	return response.List(r.Recursion() > 0, out, func(f api.Profile) string { return profileURL(pp, f.Name) })
}

func (d *Daemon) getProfile(r *route.Request) response.Response {
	pp, err := d.profileProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	var out api.Profile
	err = d.store.View(context.Background(), func(tx *store.Tx) error {
		f, err := tx.Profile(pp, r.Var("name"))
		if err != nil {
			return err
		}
		out, err = d.renderProfile(tx, f, r.Identity)
		return err
	})
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(out, out.ProfilePut)
}

// checkProfile validates a profile's own keys and devices, and holds it to
// the project's restrictions (and the delegation floor) like an instance.
// Rules that span keys are checked on the instances using it.
func checkProfile(r *route.Request, tx *store.Tx, f store.Profile) error {
	for k := range f.Config {
		if config.IsVolatile(k) {
			return errdefs.Invalidf("Invalid profile configuration key %q: volatile keys belong to instances", k)
		}
	}
	if err := config.CheckInstanceKeys(f.Config); err != nil {
		return err
	}
	if err := config.CheckDevices(f.Devices); err != nil {
		return err
	}
	p, err := tx.Project(f.Project)
	if err != nil {
		return err
	}
	pol := project.Policy{Project: f.Project, Config: p.Config, Admin: r.Identity.IsAdmin()}
	return pol.CheckProfile(f.Name, f.Config, f.Devices)
}

func (d *Daemon) createProfile(r *route.Request) response.Response {
	var req api.ProfilesPost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if err := config.Name(req.Name); err != nil {
		return response.Error(errdefs.Invalidf("Invalid profile name %q: %v", req.Name, err))
	}
	pp, err := d.profileProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	f := store.Profile{Project: pp, Name: req.Name, Description: req.Description, Config: config.Normalize(req.Config), Devices: req.Devices}
	if f.Devices == nil {
		f.Devices = store.Devices{}
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		if err := checkProfile(r, tx, f); err != nil {
			return err
		}
		return tx.CreateProfile(f)
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("profile-created", profileURL(pp, req.Name), pp, r.Identity.Requestor(), nil)
	return response.Created(profileURL(pp, req.Name))
}

type profilePatch struct {
	Config      map[string]string            `json:"config"`
	Description *string                      `json:"description"`
	Devices     map[string]map[string]string `json:"devices"`
}

func (d *Daemon) putProfile(r *route.Request) response.Response {
	var req api.ProfilePut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateProfile(r, func(f store.Profile) store.Profile {
		f.Config, f.Description, f.Devices = config.Normalize(req.Config), req.Description, req.Devices
		if f.Devices == nil {
			f.Devices = store.Devices{}
		}
		return f
	})
}

func (d *Daemon) patchProfile(r *route.Request) response.Response {
	var req profilePatch
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateProfile(r, func(f store.Profile) store.Profile {
		f.Config = config.Merge(f.Config, req.Config)
		f.Devices = maps.Clone(f.Devices)
		if f.Devices == nil {
			f.Devices = store.Devices{}
		}
		for n, dev := range req.Devices {
			f.Devices[n] = dev
		}
		if req.Description != nil {
			f.Description = *req.Description
		}
		return f
	})
}

// errUsersChanged: the instances using a profile changed between locking
// them and the transaction.
var errUsersChanged = errors.New("the instances using the profile changed")

// instKey names an instance for locking.
type instKey struct{ project, name string }

// updateProfile changes a profile after re-checking every instance that
// uses it with the new profile (the config choke point) and re-assigning
// their ID maps, all in one transaction: a change that would break one of
// them changes nothing. Then it applies the change to the running ones,
// each as updateInstance would: a failure leaves the stored change for
// the next start, is reported the same way, and does not stop the others.
// The instances are locked, in one order, from before the transaction
// (the ID map check reads whether each runs) until applied.
func (d *Daemon) updateProfile(r *route.Request, next func(store.Profile) store.Profile) response.Response {
	pp, err := d.profileProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	name := r.Var("name")
	var locked []*sync.Mutex
	unlock := func() {
		for _, mu := range locked {
			mu.Unlock()
		}
		locked = nil
	}
	defer unlock()
	var changes []profileChange
	for attempt := 1; ; attempt++ {
		var keys []instKey
		err := d.store.View(context.Background(), func(tx *store.Tx) error {
			users, err := d.profileUsers(tx, pp, name)
			keys = instKeys(users)
			return err
		})
		if err != nil {
			return response.Error(err)
		}
		for _, k := range keys {
			mu := d.ct.instLock(k.project, k.name)
			mu.Lock()
			locked = append(locked, mu)
		}
		changes, err = d.commitProfile(r, pp, name, next, keys)
		if errors.Is(err, errUsersChanged) && attempt < 3 {
			unlock()
			continue
		}
		if errors.Is(err, errUsersChanged) {
			return response.Error(errdefs.Unavailablef("The instances using profile %q keep changing: try again", name))
		}
		if err != nil {
			return response.Error(err)
		}
		break
	}
	var failed []error
	for _, c := range changes {
		if err := d.applyLive(c.old, c.new); err != nil {
			failed = append(failed, fmt.Errorf("Instance %q in project %q: %w", c.new.Name, c.new.Project, err))
		}
	}
	d.bus.Lifecycle("profile-updated", profileURL(pp, name), pp, r.Identity.Requestor(), nil)
	if len(failed) > 0 {
		return response.Error(errors.Join(failed...))
	}
	return response.EmptySync()
}

// profileChange is one instance using a changed profile, before and after.
type profileChange struct{ old, new loaded }

func instKeys(users []store.Instance) []instKey {
	keys := make([]instKey, 0, len(users))
	for _, in := range users {
		keys = append(keys, instKey{in.Project, in.Name})
	}
	slices.SortFunc(keys, func(a, b instKey) int {
		return cmp.Or(cmp.Compare(a.project, b.project), cmp.Compare(a.name, b.name))
	})
	return keys
}

// commitProfile stores the profile change and the instances' new ID maps
// if every instance using it (which must be those in keys, the ones
// locked) accepts it.
func (d *Daemon) commitProfile(r *route.Request, pp, name string, next func(store.Profile) store.Profile, keys []instKey) ([]profileChange, error) {
	d.ct.allocMu.Lock()
	defer d.ct.allocMu.Unlock()
	var changes []profileChange
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		cur, err := tx.Profile(pp, name)
		if err != nil {
			return err
		}
		if err := r.CheckETag(api.ProfilePut{Config: cur.Config, Description: cur.Description, Devices: cur.Devices}); err != nil {
			return err
		}
		n := next(cur)
		if err := checkProfile(r, tx, n); err != nil {
			return err
		}
		users, err := d.profileUsers(tx, pp, name)
		if err != nil {
			return err
		}
		if !slices.Equal(instKeys(users), keys) {
			return errUsersChanged
		}
		for _, in := range users {
			old, err := d.expand(tx, in)
			if err != nil {
				return err
			}
			changes = append(changes, profileChange{old: old})
		}
		if err := tx.UpdateProfile(n); err != nil {
			return err
		}
		for i, in := range users {
			l, err := d.expand(tx, in)
			if err != nil {
				return err
			}
			if err := d.checkInstanceConfig(r, tx, in.Config, l); err != nil {
				return errdefs.Invalidf("Profile %q would break instance %q: %v", name, in.Name, err)
			}
			if err := d.assignIDMap(tx, &l); err != nil {
				return errdefs.Invalidf("Profile %q would break instance %q: %v", name, in.Name, err)
			}
			if err := tx.UpdateInstance(l.Instance); err != nil {
				return err
			}
			changes[i].new = l
		}
		return nil
	})
	return changes, err
}

func (d *Daemon) renameProfile(r *route.Request) response.Response {
	var req struct {
		Name string `json:"name"`
	}
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	from := r.Var("name")
	if from == "default" {
		return response.Error(errdefs.Forbiddenf("The \"default\" profile cannot be renamed"))
	}
	if err := config.Name(req.Name); err != nil {
		return response.Error(errdefs.Invalidf("Invalid profile name %q: %v", req.Name, err))
	}
	pp, err := d.profileProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.Profile(pp, from); err != nil {
			return err
		}
		users, err := d.profileUsers(tx, pp, from)
		if err != nil {
			return err
		}
		return tx.RenameProfile(pp, from, req.Name, users)
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("profile-renamed", profileURL(pp, req.Name), pp, r.Identity.Requestor(), map[string]any{"old_name": from})
	return response.Created(profileURL(pp, req.Name))
}

func (d *Daemon) deleteProfile(r *route.Request) response.Response {
	name := r.Var("name")
	if name == "default" {
		return response.Error(errdefs.Forbiddenf("The \"default\" profile cannot be deleted"))
	}
	pp, err := d.profileProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.Profile(pp, name); err != nil {
			return err
		}
		users, err := d.profileUsers(tx, pp, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			urls, hidden := visibleUsers(users, r.Identity)
			if hidden > 0 {
				urls = append(urls, fmt.Sprintf("%d instance(s) in other projects", hidden))
			}
			return errdefs.Invalidf("Profile is currently in use by %s", strings.Join(urls, ", "))
		}
		return tx.DeleteProfile(pp, name)
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("profile-deleted", profileURL(pp, name), pp, r.Identity.Requestor(), nil)
	return response.EmptySync()
}
