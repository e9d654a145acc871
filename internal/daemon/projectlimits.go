package daemon

import (
	"context"
	"strings"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/project"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

// projectInstances returns every instance of a project expanded (profiles
// applied), which is what restrictions and limits are checked against.
func (d *Daemon) projectInstances(tx *store.Tx, name string) ([]loaded, error) {
	ins, err := tx.Instances(name)
	if err != nil {
		return nil, err
	}
	out := make([]loaded, 0, len(ins))
	for _, in := range ins {
		l, err := d.expand(tx, in)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

func limitInstances(list []loaded) []project.Instance {
	out := make([]project.Instance, 0, len(list))
	for _, l := range list {
		out = append(out, project.Instance{Name: l.Name, Config: l.EC})
	}
	return out
}

// checkInstanceLimits checks the project's aggregate limits with l
// created or changed; profiles are read from tx, so a profile change already
// written in the transaction counts for every instance using it.
func (d *Daemon) checkInstanceLimits(tx *store.Tx, p store.Project, l loaded) error {
	limited := false
	for k := range p.Config {
		limited = limited || strings.HasPrefix(k, "limits.")
	}
	if !limited {
		return nil
	}
	insts, err := d.projectInstances(tx, p.Name)
	if err != nil {
		return err
	}
	replaced := false
	for i := range insts {
		if insts[i].Name == l.Name {
			insts[i], replaced = l, true
		}
	}
	if !replaced {
		insts = append(insts, l)
	}
	return project.CheckLimits(p.Name, p.Config, limitInstances(insts))
}

// checkProjectChange refuses a project config under which instances already
// in the project would break its restrictions or limits, naming the
// instance. Only admins edit projects, and a restricted project restricts
// admins too, so the policy is checked as for an admin.
func (d *Daemon) checkProjectChange(tx *store.Tx, name string, cfg map[string]string) error {
	insts, err := d.projectInstances(tx, name)
	if err != nil {
		return err
	}
	pol := project.Policy{Project: name, Config: cfg, Admin: true}
	for _, l := range insts {
		if err := pol.CheckInstance(l.Name, l.EC, l.ED); err != nil {
			return err
		}
	}
	return project.CheckLimits(name, cfg, limitInstances(insts))
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
		state.Resources, err = project.Usage(p.Config, limitInstances(insts))
		return err
	})
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(state, nil)
}
