package store

import (
	"fmt"
	"strings"

	"github.com/moat/moat/internal/errdefs"
)

// Project is a stored project.
type Project struct {
	Name        string
	Description string
	Config      map[string]string
}

// Projects lists every project, ordered by name.
func (t *Tx) Projects() ([]Project, error) {
	rows, err := t.query(`SELECT id, name, description FROM projects ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	type row struct {
		id int64
		p  Project
	}
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.p.Name, &r.p.Description); err != nil {
			rows.Close()
			return nil, err
		}
		list = append(list, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Project, 0, len(list))
	for _, r := range list {
		cfg, err := t.stringMap(`SELECT key, value FROM projects_config WHERE project_id = ?`, r.id)
		if err != nil {
			return nil, err
		}
		r.p.Config = cfg
		out = append(out, r.p)
	}
	return out, nil
}

// Project returns one project or an error wrapping errdefs.ErrNotFound.
func (t *Tx) Project(name string) (Project, error) {
	var id int64
	p := Project{Name: name}
	err := t.queryRow(`SELECT id, description FROM projects WHERE name = ?`, name).Scan(&id, &p.Description)
	if isNoRows(err) {
		return Project{}, errdefs.NotFoundf("Project %q not found", name)
	}
	if err != nil {
		return Project{}, err
	}
	p.Config, err = t.stringMap(`SELECT key, value FROM projects_config WHERE project_id = ?`, id)
	return p, err
}

// CreateProject stores a new project.
func (t *Tx) CreateProject(p Project) error {
	res, err := t.exec(`INSERT INTO projects (name, description) VALUES (?, ?)`, p.Name, p.Description)
	if err != nil {
		if isUniqueViolation(err) {
			return errdefs.Conflictf("Project %q already exists", p.Name)
		}
		return fmt.Errorf("create project: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	return t.putProjectConfig(id, p.Config)
}

// UpdateProject replaces a project's description and config.
func (t *Tx) UpdateProject(p Project) error {
	var id int64
	err := t.queryRow(`SELECT id FROM projects WHERE name = ?`, p.Name).Scan(&id)
	if isNoRows(err) {
		return errdefs.NotFoundf("Project %q not found", p.Name)
	}
	if err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE projects SET description = ? WHERE id = ?`, p.Description, id); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM projects_config WHERE project_id = ?`, id); err != nil {
		return err
	}
	return t.putProjectConfig(id, p.Config)
}

// RenameProject renames a project.
func (t *Tx) RenameProject(from, to string) error {
	res, err := t.exec(`UPDATE projects SET name = ? WHERE name = ?`, to, from)
	if err != nil {
		if isUniqueViolation(err) {
			return errdefs.Conflictf("Project %q already exists", to)
		}
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFoundf("Project %q not found", from)
	}
	return nil
}

// DeleteProject deletes a project and its config.
func (t *Tx) DeleteProject(name string) error {
	res, err := t.exec(`DELETE FROM projects WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFoundf("Project %q not found", name)
	}
	return nil
}

// projectUsers lists the queries that name the objects living in a project,
// each returning (url path). Later tables add their query here so that
// used_by and the "only empty projects can be deleted" rule cover them.
var projectUsers []string

// ProjectUsedBy returns the API URLs of the objects in a project.
func (t *Tx) ProjectUsedBy(name string) ([]string, error) {
	out := []string{}
	for _, q := range projectUsers {
		rows, err := t.query(q, name)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, u)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *Tx) putProjectConfig(id int64, cfg map[string]string) error {
	for k, v := range cfg {
		if _, err := t.exec(`INSERT INTO projects_config (project_id, key, value) VALUES (?, ?, ?)`, id, k, v); err != nil {
			return fmt.Errorf("store project config %q: %w", k, err)
		}
	}
	return nil
}

func isUniqueViolation(err error) bool {
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}
