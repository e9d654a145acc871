package client

import (
	"context"
	"net/http"

	"github.com/moat/moat/api"
)

// GetServer returns GET /1.0 and its ETag (of the config), for
// UpdateServer's If-Match.
func (c *Client) GetServer(ctx context.Context) (*api.Server, string, error) {
	var s api.Server
	etag, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0", query: c.projectQuery()}, &s)
	if err != nil {
		return nil, "", err
	}
	return &s, etag, nil
}

// UpdateServer replaces the server config. A non-empty etag makes the
// server refuse (412) when the config changed since it was read.
func (c *Client) UpdateServer(ctx context.Context, put api.ServerPut, etag string) error {
	_, err := c.query(ctx, request{method: http.MethodPut, path: "/1.0", body: put, ifMatch: etag}, nil)
	return err
}

// PatchServer merges put into the server config; a key set to "" is
// removed.
func (c *Client) PatchServer(ctx context.Context, put api.ServerPut) error {
	_, err := c.query(ctx, request{method: http.MethodPatch, path: "/1.0", body: put}, nil)
	return err
}
