package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/moat/moat/api"
)

func imagePath(fp string) string { return "/1.0/images/" + url.PathEscape(fp) }

func imageAliasPath(name string) string { return "/1.0/images/aliases/" + url.PathEscape(name) }

// ImageCreateArgs are the options of an image upload.
type ImageCreateArgs struct {
	// Filename is recorded as the image's filename.
	Filename string
	// Public makes the image visible to untrusted callers.
	Public bool
	// Progress, when set, is called as the upload proceeds with the bytes
	// sent so far and the total (-1 when unknown).
	Progress func(sent, total int64)
}

// progressReader reports what has been read through it.
type progressReader struct {
	r        io.Reader
	sent     int64
	total    int64
	progress func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.sent += int64(n)
		p.progress(p.sent, p.total)
	}
	return n, err
}

// CreateImage uploads a unified image tarball (metadata.yaml and rootfs/
// in one, possibly compressed, tar) of size bytes (-1 when unknown) and
// returns its fingerprint once the server has imported it.
func (c *Client) CreateImage(ctx context.Context, tarball io.Reader, size int64, args ImageCreateArgs) (string, error) {
	body := tarball
	if args.Progress != nil {
		body = &progressReader{r: tarball, total: size, progress: args.Progress}
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	if args.Filename != "" {
		hdr.Set("X-LXD-filename", args.Filename)
	}
	if args.Public {
		hdr.Set("X-LXD-public", "true")
	}
	resp, err := c.raw(ctx, http.MethodPost, "/1.0/images", c.pq(), hdr, body, size)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	env, err := decodeEnvelope(resp)
	if err != nil {
		return "", err
	}
	op, err := c.OperationFromResponse(env)
	if err != nil {
		return "", fmt.Errorf("POST /1.0/images: %w", err)
	}
	if err := op.Wait(ctx, -1); err != nil {
		return "", err
	}
	fp, _ := op.Metadata["fingerprint"].(string)
	if fp == "" {
		return "", fmt.Errorf("the server did not return the image's fingerprint")
	}
	return fp, nil
}

// raw sends a request whose body is not JSON and returns the response,
// whatever its status: the caller decodes it.
func (c *Client) raw(ctx context.Context, method, path string, query url.Values, hdr http.Header, body io.Reader, size int64) (*http.Response, error) {
	u, err := c.url(path, query)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		hr.Header[k] = vs
	}
	hr.Header.Set("User-Agent", c.userAgent)
	if size >= 0 && body != nil {
		hr.ContentLength = size
		hr.Header.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, c.transportError(err)
	}
	return resp, nil
}

// GetImages lists the project's images.
func (c *Client) GetImages(ctx context.Context) ([]api.Image, error) {
	var out []api.Image
	_, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/images", query: c.pq("recursion", "1")}, &out)
	return out, err
}

// GetImage returns an image, named by its fingerprint or a unique prefix
// of it, and its ETag.
func (c *Client) GetImage(ctx context.Context, fingerprint string) (*api.Image, string, error) {
	var img api.Image
	etag, err := c.query(ctx, request{method: http.MethodGet, path: imagePath(fingerprint), query: c.pq()}, &img)
	if err != nil {
		return nil, "", err
	}
	return &img, etag, nil
}

// UpdateImage replaces an image's writable fields.
func (c *Client) UpdateImage(ctx context.Context, fingerprint string, put api.ImagePut, etag string) error {
	_, err := c.query(ctx, request{method: http.MethodPut, path: imagePath(fingerprint), query: c.pq(), body: put, ifMatch: etag}, nil)
	return err
}

// DeleteImage deletes an image.
func (c *Client) DeleteImage(ctx context.Context, fingerprint string) error {
	return c.runAsync(ctx, request{method: http.MethodDelete, path: imagePath(fingerprint), query: c.pq()})
}

// GetImageAliases lists the project's image aliases.
func (c *Client) GetImageAliases(ctx context.Context) ([]api.ImageAlias, error) {
	var out []api.ImageAlias
	_, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/images/aliases", query: c.pq("recursion", "1")}, &out)
	return out, err
}

// GetImageAlias returns one alias.
func (c *Client) GetImageAlias(ctx context.Context, name string) (*api.ImageAlias, error) {
	var a api.ImageAlias
	if _, err := c.query(ctx, request{method: http.MethodGet, path: imageAliasPath(name), query: c.pq()}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// CreateImageAlias points a new alias at an image.
func (c *Client) CreateImageAlias(ctx context.Context, alias api.ImageAliasesPost) error {
	_, err := c.query(ctx, request{method: http.MethodPost, path: "/1.0/images/aliases", query: c.pq(), body: alias}, nil)
	return err
}

// RenameImageAlias renames an alias.
func (c *Client) RenameImageAlias(ctx context.Context, name, newName string) error {
	_, err := c.query(ctx, request{method: http.MethodPost, path: imageAliasPath(name), query: c.pq(), body: map[string]string{"name": newName}}, nil)
	return err
}

// DeleteImageAlias deletes an alias (the image stays).
func (c *Client) DeleteImageAlias(ctx context.Context, name string) error {
	_, err := c.query(ctx, request{method: http.MethodDelete, path: imageAliasPath(name), query: c.pq()}, nil)
	return err
}
