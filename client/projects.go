package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/moat/moat/api"
)

func projectPath(name string) string { return "/1.0/projects/" + url.PathEscape(name) }

// GetProjects lists the projects the caller may see.
func (c *Client) GetProjects(ctx context.Context) ([]api.Project, error) {
	var out []api.Project
	_, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/projects", query: url.Values{"recursion": {"1"}}}, &out)
	return out, err
}

// GetProject returns a project and its ETag.
func (c *Client) GetProject(ctx context.Context, name string) (*api.Project, string, error) {
	var p api.Project
	etag, err := c.query(ctx, request{method: http.MethodGet, path: projectPath(name)}, &p)
	if err != nil {
		return nil, "", err
	}
	return &p, etag, nil
}

// CreateProject creates a project.
func (c *Client) CreateProject(ctx context.Context, p api.ProjectsPost) error {
	_, err := c.query(ctx, request{method: http.MethodPost, path: "/1.0/projects", body: p}, nil)
	return err
}

// UpdateProject replaces a project's description and config; a non-empty
// etag is sent as If-Match.
func (c *Client) UpdateProject(ctx context.Context, name string, put api.ProjectPut, etag string) error {
	_, err := c.query(ctx, request{method: http.MethodPut, path: projectPath(name), body: put, ifMatch: etag}, nil)
	return err
}

// PatchProject changes only what patch sets.
func (c *Client) PatchProject(ctx context.Context, name string, patch api.ProjectPatch) error {
	_, err := c.query(ctx, request{method: http.MethodPatch, path: projectPath(name), body: patch}, nil)
	return err
}

// RenameProject renames an empty project.
func (c *Client) RenameProject(ctx context.Context, name, newName string) error {
	return c.runAsync(ctx, request{method: http.MethodPost, path: projectPath(name), body: api.ProjectPost{Name: newName}})
}

// DeleteProject deletes an empty project.
func (c *Client) DeleteProject(ctx context.Context, name string) error {
	_, err := c.query(ctx, request{method: http.MethodDelete, path: projectPath(name)}, nil)
	return err
}

// GetProjectState returns a project's usage against its limits.
func (c *Client) GetProjectState(ctx context.Context, name string) (*api.ProjectState, error) {
	var s api.ProjectState
	if _, err := c.query(ctx, request{method: http.MethodGet, path: projectPath(name) + "/state"}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
