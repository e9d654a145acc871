package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/moat/moat/api"
)

func profilePath(name string) string { return "/1.0/profiles/" + url.PathEscape(name) }

// GetProfiles lists the project's profiles.
func (c *Client) GetProfiles(ctx context.Context) ([]api.Profile, error) {
	var out []api.Profile
	_, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/profiles", query: c.pq("recursion", "1")}, &out)
	return out, err
}

// GetProfile returns a profile and its ETag.
func (c *Client) GetProfile(ctx context.Context, name string) (*api.Profile, string, error) {
	var p api.Profile
	etag, err := c.query(ctx, request{method: http.MethodGet, path: profilePath(name), query: c.pq()}, &p)
	if err != nil {
		return nil, "", err
	}
	return &p, etag, nil
}

// CreateProfile creates a profile.
func (c *Client) CreateProfile(ctx context.Context, p api.ProfilesPost) error {
	_, err := c.query(ctx, request{method: http.MethodPost, path: "/1.0/profiles", query: c.pq(), body: p}, nil)
	return err
}

// UpdateProfile replaces a profile's config, devices and description; a
// non-empty etag is sent as If-Match.
func (c *Client) UpdateProfile(ctx context.Context, name string, put api.ProfilePut, etag string) error {
	_, err := c.query(ctx, request{method: http.MethodPut, path: profilePath(name), query: c.pq(), body: put, ifMatch: etag}, nil)
	return err
}

// RenameProfile renames a profile.
func (c *Client) RenameProfile(ctx context.Context, name, newName string) error {
	_, err := c.query(ctx, request{method: http.MethodPost, path: profilePath(name), query: c.pq(), body: map[string]string{"name": newName}}, nil)
	return err
}

// DeleteProfile deletes an unused profile.
func (c *Client) DeleteProfile(ctx context.Context, name string) error {
	_, err := c.query(ctx, request{method: http.MethodDelete, path: profilePath(name), query: c.pq()}, nil)
	return err
}
