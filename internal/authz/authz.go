// Package authz decides whether an identity may do something to an entity.
// Authorize is the only decision point: the route table calls it before any
// handler runs, and list endpoints filter with CanViewProject. Handlers never
// authorize on their own.
package authz

import (
	"slices"
	"strings"

	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/identity"
)

// Entitlement is a permission on an entity, named as in LXD's model.
type Entitlement string

// Entitlements in use.
const (
	CanView           Entitlement = "can_view"
	CanEdit           Entitlement = "can_edit"
	CanDelete         Entitlement = "can_delete"
	CanViewEvents     Entitlement = "can_view_events"
	CanViewOperations Entitlement = "can_view_operations"
	CanViewResources  Entitlement = "can_view_resources"
	CanCreateProjects Entitlement = "can_create_projects"
	CanViewProjects   Entitlement = "can_view_projects"
	// CanCreateIdentities adds certificates and issues trust tokens.
	CanCreateIdentities Entitlement = "can_create_identities"
)

// EntityType is the kind of object an entitlement applies to.
type EntityType string

// Entity types in use.
const (
	Server    EntityType = "server"
	Project   EntityType = "project"
	Operation EntityType = "operation"
	// Certificate is a trust store entry; its Name is the fingerprint.
	Certificate EntityType = "certificate"
)

// Entity is the object of a request. Project is the project the entity
// lives in (for a project itself, its own name).
type Entity struct {
	Type    EntityType
	Name    string
	Project string
	// AdminOnly hides the entity from everyone but full admins, whatever
	// their project rights (token operations: their secret mints admins).
	AdminOnly bool
	// AllProjects is an all-projects list request: a confined identity may
	// view it, and the handler shows it only its own projects.
	AllProjects bool
}

// serverForRestricted lists what a confined identity may do at server level.
var serverForRestricted = []Entitlement{CanViewResources}

// projectForRestricted lists what a confined identity may do to a project
// it is confined to: use it, never change or delete it.
var projectForRestricted = []Entitlement{CanView, CanViewEvents, CanViewOperations,
	CanCreateInstances, CanCreateImages, CanCreateProfiles}

// allProjectsForRestricted is what a confined identity may ask across all
// projects: read-only lists that handlers filter to its projects.
var allProjectsForRestricted = []Entitlement{CanView, CanViewEvents, CanViewOperations}

// certificateSelf is what a restricted certificate may do to its own entry.
var certificateSelf = []Entitlement{CanView, CanEdit, CanDelete}

// Authorize returns nil if id may exercise ent on e. A denial wraps
// errdefs.ErrNotFound when the caller may not even know the entity exists,
// and errdefs.ErrForbidden otherwise.
func Authorize(id *identity.Identity, ent Entitlement, e Entity) error {
	if id.IsAdmin() {
		return nil
	}
	if !id.Trusted() {
		return errdefs.Forbiddenf("not authorized")
	}
	if e.AdminOnly {
		return errdefs.NotFoundf("%s not found", titleCase(string(e.Type)))
	}
	switch e.Type {
	case Server, StoragePool:
		if slices.Contains(serverForRestricted, ent) {
			return nil
		}
		return errdefs.Forbiddenf("Certificate is restricted")
	case Certificate:
		// A confined certificate sees and manages only itself (viewing,
		// replacing its certificate, removing itself); others do not
		// exist for it.
		if id.Kind == identity.TLSRestricted && e.Name != "" && e.Name == id.Username && slices.Contains(certificateSelf, ent) {
			return nil
		}
		return errdefs.NotFoundf("Certificate not found")
	case Project:
		if e.AllProjects {
			if slices.Contains(allProjectsForRestricted, ent) {
				return nil
			}
			return errdefs.Forbiddenf("Certificate is restricted")
		}
		if !CanViewProject(id, e.Name) {
			return errdefs.NotFoundf("Project not found")
		}
		if slices.Contains(projectForRestricted, ent) {
			return nil
		}
		return errdefs.Forbiddenf("%s on project %q is not allowed for a confined identity", ent, e.Name)
	default:
		// Project-scoped objects: everything inside the caller's projects.
		if !CanViewProject(id, e.Project) {
			return errdefs.NotFoundf("%s not found", titleCase(string(e.Type)))
		}
		return nil
	}
}

// CanViewProject reports whether id may see the project and what is in it.
// List endpoints use it to filter silently.
func CanViewProject(id *identity.Identity, project string) bool {
	if id.IsAdmin() {
		return true
	}
	if !id.Trusted() {
		return false
	}
	return slices.Contains(id.Projects, project)
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
