package client

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/token"
)

func certificatePath(fp string) string { return "/1.0/certificates/" + url.PathEscape(fp) }

// GetCertificates lists the trust store entries the caller may see.
func (c *Client) GetCertificates(ctx context.Context) ([]api.Certificate, error) {
	var list []api.Certificate
	req := request{method: http.MethodGet, path: "/1.0/certificates", query: url.Values{"recursion": {"1"}}}
	if _, err := c.query(ctx, req, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// GetCertificate returns one entry (a fingerprint prefix is accepted) and
// its ETag.
func (c *Client) GetCertificate(ctx context.Context, fingerprint string) (*api.Certificate, string, error) {
	var cert api.Certificate
	etag, err := c.query(ctx, request{method: http.MethodGet, path: certificatePath(fingerprint)}, &cert)
	if err != nil {
		return nil, "", err
	}
	return &cert, etag, nil
}

// CreateCertificate adds a certificate to the trust store. Without
// Certificate, the server adds the caller's own TLS certificate.
func (c *Client) CreateCertificate(ctx context.Context, post api.CertificatesPost) error {
	_, err := c.query(ctx, request{method: http.MethodPost, path: "/1.0/certificates", body: post}, nil)
	return err
}

// AddCertificate adds cert (base64 DER on the wire) with the given name
// and restrictions.
func (c *Client) AddCertificate(ctx context.Context, cert *x509.Certificate, name string, restricted bool, projects []string) error {
	return c.CreateCertificate(ctx, api.CertificatesPost{
		Name: name, Type: "client", Restricted: restricted, Projects: projects,
		Certificate: base64.StdEncoding.EncodeToString(cert.Raw),
	})
}

// UpdateCertificate replaces an entry; a non-empty etag guards against a
// concurrent change.
func (c *Client) UpdateCertificate(ctx context.Context, fingerprint string, put api.CertificatePut, etag string) error {
	_, err := c.query(ctx, request{method: http.MethodPut, path: certificatePath(fingerprint), body: put, ifMatch: etag}, nil)
	return err
}

// DeleteCertificate removes an entry.
func (c *Client) DeleteCertificate(ctx context.Context, fingerprint string) error {
	_, err := c.query(ctx, request{method: http.MethodDelete, path: certificatePath(fingerprint)}, nil)
	return err
}

// RedeemToken asks the server to trust the client's own TLS certificate
// with a trust token (untrusted clients only; a trusted one gets 409 and
// the token is used up all the same).
func (c *Client) RedeemToken(ctx context.Context, tok string) error {
	return c.CreateCertificate(ctx, api.CertificatesPost{Type: "client", TrustToken: tok})
}

// RedeemPassword asks the server to trust the client's certificate with
// the legacy trust password.
func (c *Client) RedeemPassword(ctx context.Context, password string) error {
	return c.CreateCertificate(ctx, api.CertificatesPost{Type: "client", Password: password})
}

// CertificateToken is a pending trust token.
type CertificateToken struct {
	// ID is the id of the token's operation (revoke with it).
	ID string `json:"id" yaml:"id"`
	// Token is the token string to hand to the new client.
	Token      string   `json:"token" yaml:"token"`
	Name       string   `json:"name" yaml:"name"`
	Restricted bool     `json:"restricted" yaml:"restricted"`
	Projects   []string `json:"projects" yaml:"projects"`
	// ExpiresAt is zero when the token never expires.
	ExpiresAt time.Time `json:"expires_at" yaml:"expires_at"`
}

// CreateCertificateToken asks for a trust token for a new client named
// name and returns it. The token is an operation that stays running until
// it is redeemed, revoked or expires.
func (c *Client) CreateCertificateToken(ctx context.Context, name string, restricted bool, projects []string) (*CertificateToken, error) {
	if projects == nil {
		projects = []string{}
	}
	post := api.CertificatesPost{Name: name, Type: "client", Restricted: restricted, Projects: projects, Token: true}
	env, _, err := c.do(ctx, request{method: http.MethodPost, path: "/1.0/certificates", body: post})
	if err != nil {
		return nil, err
	}
	op, err := c.OperationFromResponse(env)
	if err != nil {
		return nil, fmt.Errorf("POST /1.0/certificates: %w", err)
	}
	return tokenFromOperation(op.Operation)
}

// tokenFromOperation builds the LXD-format token from a token operation's
// metadata.
func tokenFromOperation(op api.Operation) (*CertificateToken, error) {
	if op.Class != api.OperationClassToken {
		return nil, fmt.Errorf("operation %s is not a token (class %q)", op.ID, op.Class)
	}
	md := op.Metadata
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	req, _ := md["request"].(map[string]any)
	t := token.Token{Fingerprint: str(md, "fingerprint"), Secret: str(md, "secret"), ClientName: str(req, "name")}
	addrs, _ := md["addresses"].([]any)
	for _, a := range addrs {
		if s, ok := a.(string); ok {
			t.Addresses = append(t.Addresses, s)
		}
	}
	if e := str(md, "expiresAt"); e != "" {
		exp, err := time.Parse(time.RFC3339Nano, e)
		if err != nil {
			return nil, fmt.Errorf("token %s: bad expiresAt: %w", op.ID, err)
		}
		t.ExpiresAt = exp
	}
	s, err := token.Encode(t)
	if err != nil {
		return nil, fmt.Errorf("token %s: %w", op.ID, err)
	}
	ct := &CertificateToken{ID: op.ID, Token: s, Name: t.ClientName, ExpiresAt: t.ExpiresAt, Projects: []string{}}
	if req != nil {
		ct.Restricted, _ = req["restricted"].(bool)
		ps, _ := req["projects"].([]any)
		for _, p := range ps {
			if s, ok := p.(string); ok {
				ct.Projects = append(ct.Projects, s)
			}
		}
	}
	return ct, nil
}

// GetCertificateTokens lists the pending trust tokens (running token
// operations in project default; only full admins see them).
func (c *Client) GetCertificateTokens(ctx context.Context) ([]CertificateToken, error) {
	ops, err := c.UseProject("default").GetOperations(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []CertificateToken
	for _, op := range ops {
		if op.Class != api.OperationClassToken || op.StatusCode != api.Running {
			continue
		}
		t, err := tokenFromOperation(op)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, nil
}

// ErrNoSuchToken is returned by RevokeCertificateToken when no pending
// token matches.
var ErrNoSuchToken = errors.New("no pending trust token matches")

// RevokeCertificateToken cancels the pending token whose client name or
// operation id is nameOrID. A name held by several pending tokens is
// ambiguous: use the id.
func (c *Client) RevokeCertificateToken(ctx context.Context, nameOrID string) error {
	toks, err := c.GetCertificateTokens(ctx)
	if err != nil {
		return err
	}
	var match []CertificateToken
	for _, t := range toks {
		if t.ID == nameOrID {
			match = []CertificateToken{t}
			break
		}
		if t.Name == nameOrID {
			match = append(match, t)
		}
	}
	switch len(match) {
	case 0:
		return fmt.Errorf("%w %q", ErrNoSuchToken, nameOrID)
	case 1:
		return c.UseProject("default").DeleteOperation(ctx, match[0].ID)
	}
	return fmt.Errorf("%d pending tokens are named %q: revoke by id", len(match), nameOrID)
}
