package daemon

import (
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
)

// Moat has no snapshots or backups yet. An instance's snapshot and backup
// lists are still served, empty, because that is true and LXD clients
// read both to show an instance (lxc info needs the container_backup
// extension for it); taking one is refused as not implemented.
func (d *Daemon) snapshotEndpoints() []*route.Endpoint {
	return []*route.Endpoint{
		{Path: "/1.0/instances/{name}/snapshots",
			Get:  &route.Action{Handler: d.emptyInstanceList, Entitlement: authz.CanView, Entity: instanceEntity},
			Post: &route.Action{Handler: d.notYet("Snapshots"), Entitlement: authz.CanEdit, Entity: instanceEntity},
		},
		{Path: "/1.0/instances/{name}/backups",
			Get:  &route.Action{Handler: d.emptyInstanceList, Entitlement: authz.CanView, Entity: instanceEntity},
			Post: &route.Action{Handler: d.notYet("Backups"), Entitlement: authz.CanEdit, Entity: instanceEntity},
		},
	}
}

func init() {
	apiExtensions = append(apiExtensions, "container_backup")
}

func (d *Daemon) emptyInstanceList(r *route.Request) response.Response {
	if _, err := d.loadInstance(r.Project, r.Var("name")); err != nil {
		return response.Error(err)
	}
	return response.List(r.Recursion() > 0, []struct{}{}, func(struct{}) string { return "" })
}

func (d *Daemon) notYet(what string) func(*route.Request) response.Response {
	return func(r *route.Request) response.Response {
		if _, err := d.loadInstance(r.Project, r.Var("name")); err != nil {
			return response.Error(err)
		}
		return response.Error(errdefs.NotImplementedf("%s are not supported yet", what))
	}
}
