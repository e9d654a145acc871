package daemon

import (
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/route"
)

// endpoints is the route table. Every action names the entitlement checked
// before its handler runs (see package route); an action without one must
// be AllowUntrusted, and the route-table test enforces it. Each feature
// keeps its endpoints in its own file and adds them here.
func (d *Daemon) endpoints() []*route.Endpoint {
	var eps []*route.Endpoint
	eps = append(eps, d.coreEndpoints()...)
	eps = append(eps, d.trustEndpoints()...)
	eps = append(eps, d.containerEndpoints()...)
	eps = append(eps, d.execEndpoints()...)
	return eps
}

// serverEntity is the entity of server-level actions.
func serverEntity(*route.Request) authz.Entity { return authz.Entity{Type: authz.Server} }

// coreEndpoints are the server, project, operation and event endpoints.
func (d *Daemon) coreEndpoints() []*route.Endpoint {
	server := serverEntity
	return []*route.Endpoint{
		{Path: "/", Get: &route.Action{Handler: getRoot, AllowUntrusted: true}},
		{Path: "/1.0",
			Get:   &route.Action{Handler: d.getServer, AllowUntrusted: true},
			Put:   &route.Action{Handler: d.putServer, Entitlement: authz.CanEdit, Entity: server},
			Patch: &route.Action{Handler: d.patchServer, Entitlement: authz.CanEdit, Entity: server},
		},
		{Path: "/1.0/events",
			Get: &route.Action{Handler: d.getEvents, Entitlement: authz.CanViewEvents, Entity: requestProjectEntity, AllProjects: true},
		},
		{Path: "/1.0/projects",
			// Listing is filtered per project by the handler.
			Get:  &route.Action{Handler: d.getProjects, Entitlement: authz.CanViewResources, Entity: server},
			Post: &route.Action{Handler: d.createProject, Entitlement: authz.CanCreateProjects, Entity: server},
		},
		{Path: "/1.0/projects/{name}",
			Get:    &route.Action{Handler: d.getProject, Entitlement: authz.CanView, Entity: projectEntity},
			Put:    &route.Action{Handler: d.putProject, Entitlement: authz.CanEdit, Entity: projectEntity},
			Patch:  &route.Action{Handler: d.patchProject, Entitlement: authz.CanEdit, Entity: projectEntity},
			Post:   &route.Action{Handler: d.renameProject, Entitlement: authz.CanEdit, Entity: projectEntity},
			Delete: &route.Action{Handler: d.deleteProject, Entitlement: authz.CanDelete, Entity: projectEntity},
		},
		{Path: "/1.0/projects/{name}/state",
			Get: &route.Action{Handler: d.getProjectState, Entitlement: authz.CanView, Entity: projectEntity},
		},
		{Path: "/1.0/operations",
			Get: &route.Action{Handler: d.getOperations, Entitlement: authz.CanViewOperations, Entity: requestProjectEntity, AllProjects: true},
		},
		{Path: "/1.0/operations/{id}",
			Get:    &route.Action{Handler: d.getOperation, Entitlement: authz.CanView, Entity: d.requestOperationEntity},
			Delete: &route.Action{Handler: d.deleteOperation, Entitlement: authz.CanDelete, Entity: d.requestOperationEntity},
		},
		{Path: "/1.0/operations/{id}/wait",
			Get: &route.Action{Handler: d.waitOperation, Entitlement: authz.CanView, Entity: d.requestOperationEntity},
		},
		{Path: "/1.0/operations/{id}/websocket",
			Get: &route.Action{Handler: d.operationWebsocket, Entitlement: authz.CanView, Entity: d.requestOperationEntity},
		},
	}
}
