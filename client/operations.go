package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat/moat/api"
)

// ErrTimeout is returned by Wait when the operation is still running after
// the timeout.
var ErrTimeout = errors.New("operation still running after the timeout")

func operationPath(id string) string { return "/1.0/operations/" + url.PathEscape(id) }

// GetOperations lists the operations of the client's project, or of every
// project the caller may see when allProjects is set, oldest first.
func (c *Client) GetOperations(ctx context.Context, allProjects bool) ([]api.Operation, error) {
	q := url.Values{"recursion": {"1"}}
	if allProjects {
		q.Set("all-projects", "true")
	} else if c.project != "" {
		q.Set("project", c.project)
	}
	// The server groups operations by lower-cased status.
	var groups map[string][]api.Operation
	if _, err := c.query(ctx, request{method: http.MethodGet, path: "/1.0/operations", query: q}, &groups); err != nil {
		return nil, err
	}
	var out []api.Operation
	for _, ops := range groups {
		out = append(out, ops...)
	}
	slices.SortFunc(out, func(a, b api.Operation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// GetOperation returns one operation.
func (c *Client) GetOperation(ctx context.Context, id string) (*api.Operation, error) {
	var op api.Operation
	if _, err := c.query(ctx, request{method: http.MethodGet, path: operationPath(id)}, &op); err != nil {
		return nil, err
	}
	return &op, nil
}

// DeleteOperation cancels an operation (only those with may_cancel).
func (c *Client) DeleteOperation(ctx context.Context, id string) error {
	_, err := c.query(ctx, request{method: http.MethodDelete, path: operationPath(id)}, nil)
	return err
}

// WaitOperation blocks until the operation is final or timeout passes (a
// negative timeout waits until ctx ends) and returns its state then. It
// reports only transport and server errors: see Operation.Wait for the
// operation's own outcome.
func (c *Client) WaitOperation(ctx context.Context, id string, timeout time.Duration) (*api.Operation, error) {
	secs := "-1"
	if timeout >= 0 {
		secs = strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)
	}
	var op api.Operation
	req := request{method: http.MethodGet, path: operationPath(id) + "/wait", query: url.Values{"timeout": {secs}}}
	if _, err := c.query(ctx, req, &op); err != nil {
		return nil, err
	}
	return &op, nil
}

// Operation is a handle on a background operation started by an async
// response.
type Operation struct {
	api.Operation
	c *Client
}

// OperationFromResponse returns the handle of an async envelope, as
// returned by Query.
func (c *Client) OperationFromResponse(env *api.Response) (*Operation, error) {
	if env.Type != api.AsyncResponse {
		return nil, fmt.Errorf("not an async response (type %q)", env.Type)
	}
	op := &Operation{c: c}
	if err := json.Unmarshal(env.Metadata, &op.Operation); err != nil {
		return nil, fmt.Errorf("decode operation: %w", err)
	}
	if op.ID == "" {
		// Older servers put only the URL in the envelope.
		op.ID = path.Base(env.Operation)
	}
	return op, nil
}

// Wait waits up to timeout (negative: until ctx ends) for the operation to
// finish and refreshes op.Operation. It returns ErrTimeout when it is still
// running, and the server's error text when it failed or was cancelled.
func (op *Operation) Wait(ctx context.Context, timeout time.Duration) error {
	got, err := op.c.WaitOperation(ctx, op.ID, timeout)
	if err != nil {
		return err
	}
	op.Operation = *got
	switch {
	case !got.StatusCode.IsFinal():
		return ErrTimeout
	case got.StatusCode == api.Success:
		return nil
	case got.Err != "":
		return errors.New(got.Err)
	}
	return fmt.Errorf("operation %s", strings.ToLower(got.Status))
}

// Cancel asks the server to cancel the operation.
func (op *Operation) Cancel(ctx context.Context) error { return op.c.DeleteOperation(ctx, op.ID) }
