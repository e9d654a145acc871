package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/moat/moat/api"
)

// FileInfo is what the server says about a file of an instance.
type FileInfo struct {
	UID, GID int64
	Mode     int // permission bits
	// Type is "file", "directory" or "symlink".
	Type string
	// Entries are a directory's names.
	Entries []string
}

// FileArgs describe a file written into an instance.
type FileArgs struct {
	// Content is the file's content (a symlink's target); nil for a
	// directory.
	Content io.Reader
	// Size of Content in bytes, -1 when unknown.
	Size int64
	// UID and GID own the file (IDs inside the instance); -1 leaves the
	// server's default (0).
	UID, GID int64
	// Mode is the permission bits; -1 leaves the server's default.
	Mode int
	// Type is "file" (default), "directory" or "symlink".
	Type string
	// WriteMode is "overwrite" (default) or "append".
	WriteMode string
}

func filesPath(name string) string { return instancePath(name) + "/files" }

// GetInstanceFile reads path in the instance. For a file, the content is
// returned to be read and closed by the caller; for a symlink it is the
// target; for a directory it is nil and FileInfo.Entries lists it.
func (c *Client) GetInstanceFile(ctx context.Context, name, path string) (io.ReadCloser, *FileInfo, error) {
	resp, err := c.raw(ctx, http.MethodGet, filesPath(name), c.pq("path", path), nil, nil, -1)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		_, err := decodeEnvelope(resp)
		if err == nil {
			err = fmt.Errorf("GET %s: unexpected status %s", path, resp.Status)
		}
		return nil, nil, err
	}
	info := &FileInfo{Type: resp.Header.Get("X-LXD-type")}
	info.UID, _ = strconv.ParseInt(resp.Header.Get("X-LXD-uid"), 10, 64)
	info.GID, _ = strconv.ParseInt(resp.Header.Get("X-LXD-gid"), 10, 64)
	if m, err := strconv.ParseUint(resp.Header.Get("X-LXD-mode"), 8, 32); err == nil {
		info.Mode = int(m)
	}
	if info.Type == "directory" {
		defer resp.Body.Close()
		env, err := decodeEnvelope(resp)
		if err != nil {
			return nil, nil, err
		}
		if env.Type != api.SyncResponse {
			return nil, nil, fmt.Errorf("GET %s: expected a sync response", path)
		}
		if err := json.Unmarshal(env.Metadata, &info.Entries); err != nil {
			return nil, nil, fmt.Errorf("GET %s: decode directory: %w", path, err)
		}
		return nil, info, nil
	}
	return resp.Body, info, nil
}

// CreateInstanceFile writes a file, directory or symlink at path in the
// instance.
func (c *Client) CreateInstanceFile(ctx context.Context, name, path string, args FileArgs) error {
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	if args.UID >= 0 {
		hdr.Set("X-LXD-uid", strconv.FormatInt(args.UID, 10))
	}
	if args.GID >= 0 {
		hdr.Set("X-LXD-gid", strconv.FormatInt(args.GID, 10))
	}
	if args.Mode >= 0 {
		hdr.Set("X-LXD-mode", fmt.Sprintf("%04o", args.Mode))
	}
	if args.Type != "" {
		hdr.Set("X-LXD-type", args.Type)
	}
	if args.WriteMode != "" {
		hdr.Set("X-LXD-write", args.WriteMode)
	}
	size := args.Size
	if args.Content == nil {
		size = -1
	}
	resp, err := c.raw(ctx, http.MethodPost, filesPath(name), c.pq("path", path), hdr, args.Content, size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = decodeEnvelope(resp)
	return err
}

// DeleteInstanceFile removes a file, symlink or empty directory.
func (c *Client) DeleteInstanceFile(ctx context.Context, name, path string) error {
	_, err := c.query(ctx, request{method: http.MethodDelete, path: filesPath(name), query: c.pq("path", path)}, nil)
	return err
}
