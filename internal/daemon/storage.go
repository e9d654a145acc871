package daemon

import (
	"context"
	"net/url"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

func storagePoolEntity(r *route.Request) authz.Entity {
	return authz.Entity{Type: authz.StoragePool, Name: r.Var("name")}
}

// storageEndpoints: pools are listed and shown to anyone trusted (lxc
// launch reads the pool), with used_by filtered to the caller's projects;
// only the default dir pool exists, created at first start, and creating
// more is not supported yet.
func (d *Daemon) storageEndpoints() []*route.Endpoint {
	return []*route.Endpoint{
		{Path: "/1.0/storage-pools",
			Get:  &route.Action{Handler: d.getStoragePools, Entitlement: authz.CanViewResources, Entity: serverEntity},
			Post: &route.Action{Handler: d.createStoragePool, Entitlement: authz.CanEdit, Entity: serverEntity},
		},
		{Path: "/1.0/storage-pools/{name}",
			Get: &route.Action{Handler: d.getStoragePool, Entitlement: authz.CanViewResources, Entity: storagePoolEntity},
		},
	}
}

func storagePoolURL(name string) string { return "/1.0/storage-pools/" + url.PathEscape(name) }

// renderPool shows a pool to id. The pool is server-level, but what uses
// it lives in projects: used_by lists the instances and profiles whose
// root disk is on the pool, in the projects id may see only (a confined
// identity must not learn other projects' instance names from it), and
// the config (the host path) is for admins.
func (d *Daemon) renderPool(tx *store.Tx, p store.StoragePool, id *identity.Identity) (api.StoragePool, error) {
	onPool := func(devs store.Devices) bool {
		for _, dev := range devs {
			if dev["type"] == "disk" && dev["path"] == "/" && dev["pool"] == p.Name {
				return true
			}
		}
		return false
	}
	used := []string{}
	ins, err := tx.Instances("")
	if err != nil {
		return api.StoragePool{}, err
	}
	for _, in := range ins {
		if !authz.CanViewProject(id, in.Project) {
			continue
		}
		l, err := d.expand(tx, in)
		if err != nil {
			continue
		}
		if onPool(l.ED) {
			used = append(used, instanceURL(in.Project, in.Name))
		}
	}
	projects, err := tx.Projects()
	if err != nil {
		return api.StoragePool{}, err
	}
	for _, pr := range projects {
		if !authz.CanViewProject(id, pr.Name) {
			continue
		}
		profiles, err := tx.Profiles(pr.Name)
		if err != nil {
			return api.StoragePool{}, err
		}
		for _, f := range profiles {
			if onPool(f.Devices) {
				used = append(used, profileURL(f.Project, f.Name))
			}
		}
	}
	cfg := p.Config
	if !id.IsAdmin() {
		cfg = map[string]string{}
	}
	return api.StoragePool{Name: p.Name, Driver: p.Driver, Description: p.Description, Config: cfg,
		UsedBy: used, Status: "Created", Locations: []string{"none"}}, nil
}

func (d *Daemon) getStoragePools(r *route.Request) response.Response {
	var out []api.StoragePool
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		pools, err := tx.StoragePools()
		if err != nil {
			return err
		}
		for _, p := range pools {
			ap, err := d.renderPool(tx, p, r.Identity)
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
	return response.List(r.Recursion() > 0, out, func(p api.StoragePool) string { return storagePoolURL(p.Name) })
}

func (d *Daemon) getStoragePool(r *route.Request) response.Response {
	var out api.StoragePool
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		p, err := tx.StoragePool(r.Var("name"))
		if err != nil {
			return err
		}
		out, err = d.renderPool(tx, p, r.Identity)
		return err
	})
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(out, map[string]any{"config": out.Config, "description": out.Description})
}

func (d *Daemon) createStoragePool(r *route.Request) response.Response {
	return response.Error(errdefs.NotImplementedf("Only the default dir pool is supported; creating pools is not implemented yet"))
}
