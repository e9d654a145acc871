package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/moat/moat/api"
)

func instancePath(name string) string { return "/1.0/instances/" + url.PathEscape(name) }

// pq is the client's ?project= plus extra key/value pairs.
func (c *Client) pq(kv ...string) url.Values {
	q := url.Values{}
	if c.project != "" {
		q.Set("project", c.project)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// GetInstanceNames lists the names of the project's instances.
func (c *Client) GetInstanceNames(ctx context.Context) ([]string, error) {
	var urls []string
	if _, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/instances", query: c.pq()}, &urls); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(urls))
	for _, u := range urls {
		names = append(names, lastSegment(u))
	}
	return names, nil
}

// lastSegment is the unescaped name at the end of an API URL.
func lastSegment(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	path := p.EscapedPath()
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			path = path[i+1:]
			break
		}
	}
	if s, err := url.PathUnescape(path); err == nil {
		return s
	}
	return path
}

// GetInstances lists the project's instances with their state
// (recursion=2), as `list` shows them.
func (c *Client) GetInstances(ctx context.Context) ([]api.InstanceFull, error) {
	var out []api.InstanceFull
	_, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/instances", query: c.pq("recursion", "2")}, &out)
	return out, err
}

// GetInstance returns an instance and its ETag.
func (c *Client) GetInstance(ctx context.Context, name string) (*api.Instance, string, error) {
	var in api.Instance
	etag, err := c.query(ctx, request{method: http.MethodGet, path: instancePath(name), query: c.pq()}, &in)
	if err != nil {
		return nil, "", err
	}
	return &in, etag, nil
}

// GetInstanceFull returns an instance with its state (recursion=1).
func (c *Client) GetInstanceFull(ctx context.Context, name string) (*api.InstanceFull, string, error) {
	var in api.InstanceFull
	etag, err := c.query(ctx, request{method: http.MethodGet, path: instancePath(name), query: c.pq("recursion", "1")}, &in)
	if err != nil {
		return nil, "", err
	}
	return &in, etag, nil
}

// GetInstanceState returns an instance's runtime state.
func (c *Client) GetInstanceState(ctx context.Context, name string) (*api.InstanceState, error) {
	var st api.InstanceState
	if _, err := c.query(ctx, request{method: http.MethodGet, path: instancePath(name) + "/state", query: c.pq()}, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// CreateInstance creates an instance (and starts it when req.Start),
// waits for the operation and returns the instance's name (the server
// picks one when req.Name is empty).
func (c *Client) CreateInstance(ctx context.Context, req api.InstancesPost) (string, error) {
	env, _, err := c.do(ctx, request{method: http.MethodPost, path: "/1.0/instances", query: c.pq(), body: req})
	if err != nil {
		return "", err
	}
	op, err := c.OperationFromResponse(env)
	if err != nil {
		return "", fmt.Errorf("POST /1.0/instances: %w", err)
	}
	name := req.Name
	if urls := op.Resources["instances"]; name == "" && len(urls) > 0 {
		name = lastSegment(urls[0])
	}
	return name, op.Wait(ctx, -1)
}

// UpdateInstance replaces an instance's writable fields; a non-empty etag
// is sent as If-Match.
func (c *Client) UpdateInstance(ctx context.Context, name string, put api.InstancePut, etag string) error {
	return c.runAsync(ctx, request{method: http.MethodPut, path: instancePath(name), query: c.pq(), body: put, ifMatch: etag})
}

// InstancePatch is a PATCH body: nil fields are left as they are, config
// keys set to "" are removed, devices are replaced by name.
type InstancePatch struct {
	Config      map[string]string            `json:"config,omitempty"`
	Devices     map[string]map[string]string `json:"devices,omitempty"`
	Profiles    []string                     `json:"profiles,omitempty"`
	Ephemeral   *bool                        `json:"ephemeral,omitempty"`
	Description *string                      `json:"description,omitempty"`
}

// PatchInstance changes only what patch sets.
func (c *Client) PatchInstance(ctx context.Context, name string, patch InstancePatch) error {
	return c.runAsync(ctx, request{method: http.MethodPatch, path: instancePath(name), query: c.pq(), body: patch})
}

// DeleteInstance deletes an instance; force stops a running one first.
func (c *Client) DeleteInstance(ctx context.Context, name string, force bool) error {
	q := c.pq()
	if force {
		q.Set("force", "true")
	}
	return c.runAsync(ctx, request{method: http.MethodDelete, path: instancePath(name), query: q})
}

// RenameInstance renames a stopped instance.
func (c *Client) RenameInstance(ctx context.Context, name, newName string) error {
	return c.runAsync(ctx, request{method: http.MethodPost, path: instancePath(name), query: c.pq(), body: api.InstancePost{Name: newName}})
}

// UpdateInstanceState runs a state action (start, stop, restart, freeze,
// unfreeze) and waits for it.
func (c *Client) UpdateInstanceState(ctx context.Context, name string, req api.InstanceStatePut) error {
	return c.runAsync(ctx, request{method: http.MethodPut, path: instancePath(name) + "/state", query: c.pq(), body: req})
}

// GetStoragePools lists the storage pools.
func (c *Client) GetStoragePools(ctx context.Context) ([]api.StoragePool, error) {
	var out []api.StoragePool
	_, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/storage-pools", query: url.Values{"recursion": {"1"}}}, &out)
	return out, err
}

// GetStoragePool returns one storage pool.
func (c *Client) GetStoragePool(ctx context.Context, name string) (*api.StoragePool, error) {
	var p api.StoragePool
	if _, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/storage-pools/" + url.PathEscape(name)}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}
