// Package client is Moat's Go client for the LXD-compatible REST API (/1.0)
// that moatd serves.
//
// A Client is an HTTP client plus a base URL. The transport is the only
// thing that differs between connection kinds: ConnectUnix dials the admin
// socket; an HTTPS connection (client certificate, pinned server
// certificate) only has to build an *http.Client with the right tls.Config
// and hand it to newClient. Websockets (events, exec) reuse the same
// *http.Client, so they inherit whatever transport and trust the connection
// was made with.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/moat/moat/api"
)

// DefaultUnixSocket is the admin socket of a default installation.
const DefaultUnixSocket = "/var/lib/moat/unix.socket"

// ConnectArgs are the options common to every transport.
type ConnectArgs struct {
	// UserAgent is sent with every request (default "moat-client").
	UserAgent string
}

// Client talks to one moatd. Its methods are safe for concurrent use.
type Client struct {
	hc        *http.Client
	base      string // scheme://host, no trailing slash
	addr      string // what the user asked for, for error messages
	project   string
	userAgent string
}

// ConnectUnix returns a client for the daemon listening on the unix socket
// at path (DefaultUnixSocket when empty). It does not contact the daemon:
// the first call does, so a stopped daemon shows up as that call's error.
func ConnectUnix(path string, args *ConnectArgs) (*Client, error) {
	if path == "" {
		path = DefaultUnixSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		// One local daemon: keep a few idle connections for CLI bursts.
		MaxIdleConnsPerHost: 4,
	}
	// The host part is never resolved; it only has to be a valid name.
	return newClient("http://unix.socket", path, tr, args), nil
}

func newClient(base, addr string, rt http.RoundTripper, args *ConnectArgs) *Client {
	c := &Client{hc: &http.Client{Transport: rt}, base: base, addr: addr, userAgent: "moat-client"}
	if args != nil && args.UserAgent != "" {
		c.userAgent = args.UserAgent
	}
	return c
}

// UseProject returns a copy of c whose project-scoped calls (operations,
// events, server environment) target project.
func (c *Client) UseProject(project string) *Client {
	cc := *c
	cc.project = project
	return &cc
}

// Project is the project set with UseProject ("" means the server's
// default).
func (c *Client) Project() string { return c.project }

// request is one API call.
type request struct {
	method  string
	path    string // absolute API path, may carry a query string
	query   url.Values
	body    any    // nil, []byte / json.RawMessage (sent verbatim) or a value to encode
	ifMatch string // ETag for If-Match, without quotes
}

// do sends req and decodes the envelope. An error envelope (or a non-2xx
// status) becomes a *StatusError; the returned etag has its quotes removed.
func (c *Client) do(ctx context.Context, req request) (*api.Response, string, error) {
	u, err := c.url(req.path, req.query)
	if err != nil {
		return nil, "", err
	}
	var body io.Reader
	switch b := req.body.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(b)
	case json.RawMessage:
		body = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, "", err
		}
		body = bytes.NewReader(buf)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		return nil, "", err
	}
	hr.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.ifMatch != "" {
		hr.Header.Set("If-Match", `"`+req.ifMatch+`"`)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, "", c.transportError(err)
	}
	defer resp.Body.Close()
	env, err := decodeEnvelope(resp)
	if err != nil {
		return nil, "", err
	}
	return env, strings.Trim(resp.Header.Get("ETag"), `"`), nil
}

// transportError says which daemon could not be reached: the bare net
// error names an internal URL the user never typed.
func (c *Client) transportError(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("cannot connect to moatd at %s: %w", c.addr, opErr.Err)
	}
	return err
}

// url joins path (which may carry its own query string) with extra query
// parameters.
func (c *Client) url(path string, extra url.Values) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("API path %q must start with /", path)
	}
	u, err := url.Parse(c.base + path)
	if err != nil {
		return "", err
	}
	if len(extra) > 0 {
		q := u.Query()
		for k, vs := range extra {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// decodeEnvelope reads an API envelope. A body that is not an envelope is
// reported with the HTTP status, since that is all there is to say.
func decodeEnvelope(resp *http.Response) (*api.Response, error) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	var env api.Response
	if err := json.Unmarshal(raw, &env); err != nil || env.Type == "" {
		msg := strings.TrimSpace(string(raw))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return nil, &StatusError{StatusCode: resp.StatusCode, Message: msg}
	}
	if env.Type == api.ErrorResponse || resp.StatusCode >= 400 {
		code := env.ErrorCode
		if code == 0 {
			code = resp.StatusCode
		}
		return nil, &StatusError{StatusCode: code, Message: env.Error}
	}
	return &env, nil
}

// query does a sync call and decodes its metadata into out (when non-nil).
func (c *Client) query(ctx context.Context, req request, out any) (string, error) {
	env, etag, err := c.do(ctx, req)
	if err != nil {
		return "", err
	}
	if env.Type != api.SyncResponse {
		return "", fmt.Errorf("%s %s: expected a sync response, got %q", req.method, req.path, env.Type)
	}
	if out != nil {
		if err := json.Unmarshal(env.Metadata, out); err != nil {
			return "", fmt.Errorf("%s %s: decode metadata: %w", req.method, req.path, err)
		}
	}
	return etag, nil
}

// runAsync sends a request answered by a background operation and waits
// for the operation to end, returning its error.
func (c *Client) runAsync(ctx context.Context, req request) error {
	env, _, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	op, err := c.OperationFromResponse(env)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.method, req.path, err)
	}
	return op.Wait(ctx, -1)
}

// Query sends a raw request and returns the envelope and ETag, as `moat
// query` needs. body is nil, raw JSON ([]byte, json.RawMessage) or a value
// to encode. The client's project is not added: path is taken as given.
func (c *Client) Query(ctx context.Context, method, path string, body any) (*api.Response, string, error) {
	return c.do(ctx, request{method: method, path: path, body: body})
}

// projectQuery is the ?project= of project-scoped calls.
func (c *Client) projectQuery() url.Values {
	if c.project == "" {
		return nil
	}
	return url.Values{"project": {c.project}}
}
