package daemon

import (
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"strings"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

func projectURL(name string) string { return "/1.0/projects/" + url.PathEscape(name) }

// projectEntity is the entity of /1.0/projects/{name} requests.
func projectEntity(r *route.Request) authz.Entity {
	return authz.Entity{Type: authz.Project, Name: r.Var("name"), Project: r.Var("name")}
}

// requestProjectEntity is the project selected with ?project=, the entity
// of project-scoped collections.
func requestProjectEntity(r *route.Request) authz.Entity {
	return authz.Entity{Type: authz.Project, Name: r.Project, Project: r.Project, AllProjects: r.AllProjects}
}

func (d *Daemon) renderProject(tx *store.Tx, p store.Project) (api.Project, error) {
	used, err := tx.ProjectUsedBy(p.Name)
	if err != nil {
		return api.Project{}, err
	}
	return api.Project{Name: p.Name, ProjectPut: api.ProjectPut{Description: p.Description, Config: p.Config}, UsedBy: used}, nil
}

func (d *Daemon) getProjects(r *route.Request) response.Response {
	var out []api.Project
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		list, err := tx.Projects()
		if err != nil {
			return err
		}
		for _, p := range list {
			if !authz.CanViewProject(r.Identity, p.Name) {
				continue
			}
			ap, err := d.renderProject(tx, p)
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
	return response.List(r.Recursion() > 0, out, func(p api.Project) string { return projectURL(p.Name) })
}

func (d *Daemon) getProject(r *route.Request) response.Response {
	var out api.Project
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		p, err := tx.Project(r.Var("name"))
		if err != nil {
			return err
		}
		out, err = d.renderProject(tx, p)
		return err
	})
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(out, out.ProjectPut)
}

func (d *Daemon) createProject(r *route.Request) response.Response {
	var req api.ProjectsPost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if err := config.Name(req.Name); err != nil {
		return response.Error(errdefs.Invalidf("Invalid project name %q: %v", req.Name, err))
	}
	cfg := maps.Clone(req.Config)
	if cfg == nil {
		cfg = map[string]string{}
	}
	for k, v := range config.ProjectFeatureDefaults {
		if _, set := cfg[k]; !set {
			cfg[k] = v
		}
	}
	cfg = config.Normalize(cfg)
	if err := config.Project.Check(cfg); err != nil {
		return response.Error(err)
	}
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		return tx.CreateProject(store.Project{Name: req.Name, Description: req.Description, Config: cfg})
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("project-created", projectURL(req.Name), "", r.Identity.Requestor(), nil)
	return response.Created(projectURL(req.Name))
}

// projectPatch is a PATCH body: absent fields keep their value.
type projectPatch struct {
	Description *string           `json:"description"`
	Config      map[string]string `json:"config"`
}

func (d *Daemon) putProject(r *route.Request) response.Response {
	var req api.ProjectPut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateProject(r, func(store.Project) (string, map[string]string) {
		return req.Description, config.Normalize(req.Config)
	})
}

func (d *Daemon) patchProject(r *route.Request) response.Response {
	var req projectPatch
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateProject(r, func(cur store.Project) (string, map[string]string) {
		desc := cur.Description
		if req.Description != nil {
			desc = *req.Description
		}
		return desc, config.Merge(cur.Config, req.Config)
	})
}

// updateProject is the one path that changes a project's config.
func (d *Daemon) updateProject(r *route.Request, next func(store.Project) (string, map[string]string)) response.Response {
	name := r.Var("name")
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		cur, err := tx.Project(name)
		if err != nil {
			return err
		}
		if err := r.CheckETag(api.ProjectPut{Description: cur.Description, Config: cur.Config}); err != nil {
			return err
		}
		desc, cfg := next(cur)
		if err := config.Project.Check(cfg); err != nil {
			return err
		}
		if err := d.checkProjectChange(tx, name, cfg); err != nil {
			return err
		}
		if featuresChanged(cur.Config, cfg) {
			if name == "default" {
				return errdefs.Invalidf("The features of the 'default' project cannot be changed")
			}
			used, err := tx.ProjectUsedBy(name)
			if err != nil {
				return err
			}
			if len(used) > 0 {
				return errdefs.Invalidf("Features can only be changed on empty projects (project %q holds %d objects)", name, len(used))
			}
		}
		return tx.UpdateProject(store.Project{Name: name, Description: desc, Config: cfg})
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("project-updated", projectURL(name), "", r.Identity.Requestor(), nil)
	return response.EmptySync()
}

func featuresChanged(a, b map[string]string) bool {
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if strings.HasPrefix(k, "features.") && config.IsTrue(a[k]) != config.IsTrue(b[k]) {
				return true
			}
		}
	}
	return false
}

// renameProject renames a project in a background operation, as LXD
// clients expect; everything that can be checked up front is, so a bad
// request is a 400 and no operation.
func (d *Daemon) renameProject(r *route.Request) response.Response {
	var req api.ProjectPost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	from := r.Var("name")
	if from == "default" {
		return response.Error(errdefs.Forbiddenf("The 'default' project cannot be renamed"))
	}
	if err := config.Name(req.Name); err != nil {
		return response.Error(errdefs.Invalidf("Invalid project name %q: %v", req.Name, err))
	}
	rename := func(tx *store.Tx) error {
		if err := d.mustBeEmpty(tx, from, "renamed"); err != nil {
			return err
		}
		return tx.RenameProject(from, req.Name)
	}
	// Dry run: the same checks in a transaction that is rolled back.
	if err := d.store.View(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.Project(req.Name); err == nil {
			return errdefs.Conflictf("Project %q already exists", req.Name)
		}
		return d.mustBeEmpty(tx, from, "renamed")
	}); err != nil {
		return response.Error(err)
	}
	requestor := r.Identity.Requestor()
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: "Renaming project",
		Resources: map[string][]string{"projects": {projectURL(from)}}, Creator: r.Identity,
		Run: func(ctx context.Context, _ *operation.Operation) error {
			if err := d.store.Update(ctx, rename); err != nil {
				return err
			}
			d.bus.Lifecycle("project-renamed", projectURL(req.Name), "", requestor, map[string]any{"old_name": from})
			return nil
		},
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

func (d *Daemon) deleteProject(r *route.Request) response.Response {
	name := r.Var("name")
	if name == "default" {
		return response.Error(errdefs.Forbiddenf("The 'default' project cannot be deleted"))
	}
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		if err := d.mustBeEmpty(tx, name, "removed"); err != nil {
			return err
		}
		return tx.DeleteProject(name)
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("project-deleted", projectURL(name), "", r.Identity.Requestor(), nil)
	return response.EmptySync()
}

func (d *Daemon) mustBeEmpty(tx *store.Tx, name, verb string) error {
	if _, err := tx.Project(name); err != nil {
		return err
	}
	used, err := tx.ProjectUsedBy(name)
	if err != nil {
		return err
	}
	if len(used) > 0 {
		buf, _ := json.Marshal(used)
		return errdefs.Invalidf("Only empty projects can be %s: project %q is used by %s", verb, name, buf)
	}
	return nil
}

// projectExists is the check of project-scoped collections.
func (d *Daemon) projectExists(name string) error {
	return d.store.View(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Project(name)
		return err
	})
}
