package daemon

import (
	"context"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/project"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

// projectInstances returns every instance of a project with its expanded
// config, which is what limits are computed over.
func (d *Daemon) projectInstances(tx *store.Tx, name string) ([]project.Instance, error) {
	ins, err := tx.Instances(name)
	if err != nil {
		return nil, err
	}
	out := make([]project.Instance, 0, len(ins))
	for _, in := range ins {
		l, err := d.expand(tx, in)
		if err != nil {
			return nil, err
		}
		out = append(out, project.Instance{Name: in.Name, Config: l.EC})
	}
	return out, nil
}

// getProjectState reports the project's usage against its limits.
func (d *Daemon) getProjectState(r *route.Request) response.Response {
	var state api.ProjectState
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		p, err := tx.Project(r.Var("name"))
		if err != nil {
			return err
		}
		insts, err := d.projectInstances(tx, p.Name)
		if err != nil {
			return err
		}
		state.Resources, err = project.Usage(p.Config, insts)
		return err
	})
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(state, nil)
}
