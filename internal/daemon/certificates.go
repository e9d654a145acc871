package daemon

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authn"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/password"
	"github.com/moat/moat/internal/pki"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
	"github.com/moat/moat/internal/token"
)

// trustEndpoints are the trust store endpoints (spec 2.3, 2.4).
func (d *Daemon) trustEndpoints() []*route.Endpoint {
	server := serverEntity
	return []*route.Endpoint{
		{Path: "/1.0/certificates",
			// Listing is filtered per certificate (restricted certificates
			// see only themselves).
			Get: &route.Action{Handler: d.getCertificates, Entitlement: authz.CanViewResources, Entity: server},
			// Untrusted callers reach it to redeem a token or password;
			// trusted ones need can_create_identities.
			Post: &route.Action{Handler: d.createCertificate, AllowUntrusted: true, Entitlement: authz.CanCreateIdentities, Entity: server, MaxBody: 64 << 10},
		},
		{Path: "/1.0/certificates/{fingerprint}",
			Get:    &route.Action{Handler: d.getCertificate, Entitlement: authz.CanView, Entity: d.certificateEntity},
			Put:    &route.Action{Handler: d.putCertificate, Entitlement: authz.CanEdit, Entity: d.certificateEntity, MaxBody: 64 << 10},
			Patch:  &route.Action{Handler: d.patchCertificate, Entitlement: authz.CanEdit, Entity: d.certificateEntity, MaxBody: 64 << 10},
			Delete: &route.Action{Handler: d.deleteCertificate, Entitlement: authz.CanDelete, Entity: d.certificateEntity},
		},
	}
}

// resolveFingerprint expands a fingerprint prefix (as LXD accepts) to
// the one full fingerprint it names in the trust store cache.
func (d *Daemon) resolveFingerprint(prefix string) (string, error) {
	prefix = strings.ToLower(prefix)
	var match []string
	if d.trust != nil {
		for _, e := range d.trust.authn.Entries() {
			if strings.HasPrefix(e.Fingerprint, prefix) {
				match = append(match, e.Fingerprint)
			}
		}
	}
	switch len(match) {
	case 0:
		return "", errdefs.NotFoundf("Certificate not found")
	case 1:
		return match[0], nil
	}
	return "", errdefs.Invalidf("Fingerprint prefix %q matches %d certificates", prefix, len(match))
}

func (d *Daemon) certificateEntity(r *route.Request) authz.Entity {
	fp, err := d.resolveFingerprint(r.Var("fingerprint"))
	if err != nil {
		fp = r.Var("fingerprint")
	}
	return authz.Entity{Type: authz.Certificate, Name: fp}
}

func certificateAPI(c store.Certificate) api.Certificate {
	projects := c.Projects
	if projects == nil {
		projects = []string{}
	}
	return api.Certificate{Name: c.Name, Type: c.Type, Restricted: c.Restricted, Projects: projects, Certificate: c.Certificate, Fingerprint: c.Fingerprint}
}

func (d *Daemon) certificates() ([]store.Certificate, error) {
	var list []store.Certificate
	err := d.store.View(context.Background(), func(tx *store.Tx) (err error) {
		list, err = tx.Certificates()
		return err
	})
	return list, err
}

func (d *Daemon) certificate(fp string) (store.Certificate, error) {
	list, err := d.certificates()
	if err != nil {
		return store.Certificate{}, err
	}
	for _, c := range list {
		if c.Fingerprint == fp {
			return c, nil
		}
	}
	return store.Certificate{}, errdefs.NotFoundf("Certificate not found")
}

func (d *Daemon) getCertificates(r *route.Request) response.Response {
	list, err := d.certificates()
	if err != nil {
		return response.Error(err)
	}
	var objs []api.Certificate
	for _, c := range list {
		if authz.Authorize(r.Identity, authz.CanView, authz.Entity{Type: authz.Certificate, Name: c.Fingerprint}) != nil {
			continue
		}
		objs = append(objs, certificateAPI(c))
	}
	return response.List(r.Recursion() > 0, objs, func(c api.Certificate) string { return "/1.0/certificates/" + c.Fingerprint })
}

func (d *Daemon) getCertificate(r *route.Request) response.Response {
	fp, err := d.resolveFingerprint(r.Var("fingerprint"))
	if err != nil {
		return response.Error(err)
	}
	c, err := d.certificate(fp)
	if err != nil {
		return response.Error(err)
	}
	v := certificateAPI(c)
	return response.Sync(v, v)
}

// parseCertificateField accepts base64 DER (the POST wire format) or PEM
// (the PUT format, and what people paste).
func parseCertificateField(s string) (*x509.Certificate, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if b, _ := pem.Decode([]byte(s)); b != nil {
		if b.Type != "CERTIFICATE" {
			return nil, errdefs.Invalidf("Invalid value for field \"certificate\": PEM block is %q, want CERTIFICATE", b.Type)
		}
		der = b.Bytes
	} else {
		var err error
		der, err = base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, errdefs.Invalidf("Invalid value for field \"certificate\": neither PEM nor base64 DER: %v", err)
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errdefs.Invalidf("Invalid value for field \"certificate\": %v", err)
	}
	return c, nil
}

// checkCertificate applies the client certificate policy and, in PKI
// mode, the CA check.
func (d *Daemon) checkCertificate(c *x509.Certificate) error {
	if err := pki.CheckClientCert(c, time.Now()); err != nil {
		return errdefs.Invalidf("Invalid value for field \"certificate\": %v", err)
	}
	if d.trust.ca.Enabled() {
		if err := d.trust.ca.Verify(c); err != nil {
			return errdefs.Forbiddenf("The certificate is not trusted by the CA or has been revoked")
		}
	}
	return nil
}

func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// checkCertificateFields validates name, type, restricted and projects.
func (d *Daemon) checkCertificateFields(name, typ string, restricted bool, projects []string) error {
	if strings.HasPrefix(name, "-") || strings.Contains(name, "/") {
		return errdefs.Invalidf("Invalid value for field \"name\": must not start with '-' or contain '/'")
	}
	if typ != authn.CertTypeClient && typ != authn.CertTypeMetrics {
		return errdefs.Invalidf("Invalid value %q for field \"type\": must be client or metrics", typ)
	}
	if len(projects) > 0 && !restricted {
		return errdefs.Invalidf("Invalid value for field \"projects\": projects can only be specified for restricted certificates (set \"restricted\" to true)")
	}
	for _, p := range projects {
		if err := d.projectExists(p); err != nil {
			return errdefs.Invalidf("Invalid value for field \"projects\": project %q does not exist", p)
		}
	}
	return nil
}

// requestCertificate is the certificate a POST adds: the certificate
// field, else the caller's own TLS certificate.
func requestCertificate(r *http.Request, field string) (*x509.Certificate, error) {
	if field != "" {
		return parseCertificateField(field)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0], nil
	}
	return nil, errdefs.Invalidf("No client certificate provided: send the \"certificate\" field or connect with a TLS client certificate")
}

func (d *Daemon) createCertificate(r *route.Request) response.Response {
	var req api.CertificatesPost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	id := r.Identity
	admin := id.Trusted() && authz.Authorize(id, authz.CanCreateIdentities, authz.Entity{Type: authz.Server}) == nil
	if req.Type == "" {
		req.Type = authn.CertTypeClient
	}
	if req.Token {
		if !admin {
			return response.Error(errdefs.Forbiddenf("not authorized"))
		}
		switch {
		case req.Certificate != "":
			return response.Error(errdefs.Invalidf("Invalid value for field \"certificate\": must be empty when requesting a token"))
		case req.Type != authn.CertTypeClient:
			return response.Error(errdefs.Invalidf("Invalid value for field \"type\": tokens can only be issued for client certificates"))
		case req.Name == "":
			return response.Error(errdefs.Invalidf("Invalid value for field \"name\": client name must not be empty"))
		}
		if err := d.checkCertificateFields(req.Name, req.Type, req.Restricted, req.Projects); err != nil {
			return response.Error(err)
		}
		op, err := d.trust.createToken(r.HTTP, id, req)
		if err != nil {
			return response.Error(err)
		}
		return response.Async(op.Render(id))
	}

	// A token arrives in trust_token, or whole in password (LXD 5.0.2).
	secret, viaToken := "", false
	if req.TrustToken != "" {
		viaToken = true
		if tok, err := token.Decode(req.TrustToken); err == nil {
			secret = tok.Secret
		}
	} else if req.Password != "" {
		if tok, err := token.Decode(req.Password); err == nil {
			viaToken, secret = true, tok.Secret
		}
	}
	switch {
	case viaToken:
		return d.redeemCertificate(r, secret, req)
	case req.Password != "":
		return d.passwordCertificate(r, req)
	case !admin:
		return response.Error(errdefs.Forbiddenf("not authorized"))
	}

	if err := d.checkCertificateFields(req.Name, req.Type, req.Restricted, req.Projects); err != nil {
		return response.Error(err)
	}
	c, err := requestCertificate(r.HTTP, req.Certificate)
	if err != nil {
		return response.Error(err)
	}
	return d.addCertificate(r, c, req.Name, req.Type, req.Restricted, req.Projects)
}

// authFailure records a failed token or password attempt: throttle and
// security event. It returns err for the caller to answer with.
func (d *Daemon) authFailure(r *route.Request, method string, err error) response.Response {
	d.trust.limiter.Fail(r.HTTP.RemoteAddr)
	d.security("authn_login_fail:"+method, "warning", fmt.Sprintf("%s authentication from %s failed: %v", method, r.HTTP.RemoteAddr, err), r.Identity, "", r.HTTP)
	return response.Error(err)
}

func (d *Daemon) redeemCertificate(r *route.Request, secret string, req api.CertificatesPost) response.Response {
	if r.Identity.Trusted() {
		// Already trusted (lxc remote add with a token to a server that
		// trusts it): the token is used up all the same, so it cannot be
		// passed on.
		if _, err := d.trust.redeemToken(r.HTTP, r.Identity, secret); err != nil {
			return response.Error(err)
		}
		return response.Error(errdefs.Conflictf("Client is already trusted"))
	}
	// Check the certificate before using the token up, so a client that
	// forgot its certificate does not burn it.
	c, err := requestCertificate(r.HTTP, req.Certificate)
	if err != nil {
		return response.Error(err)
	}
	if err := d.checkCertificate(c); err != nil {
		return response.Error(err)
	}
	if secret == "" {
		return d.authFailure(r, "token", errNoMatchingToken)
	}
	// The token's name and restrictions win over the request's. A project
	// deleted since the token was issued is dropped: the grant can only
	// narrow. The entry is stored in the transaction that consumes the
	// token.
	var entry store.Certificate
	_, addErr, err := d.trust.redeemTokenAdding(r.HTTP, r.Identity, secret, func(rec store.Token) (store.Certificate, error) {
		projects := []string{}
		for _, p := range rec.Projects {
			if d.projectExists(p) == nil {
				projects = append(projects, p)
			}
		}
		var err error
		entry, err = d.certificateEntry(r, c, rec.Name, authn.CertTypeClient, rec.Restricted, projects)
		return entry, err
	})
	if err != nil {
		return d.authFailure(r, "token", err)
	}
	d.trust.limiter.Success(r.HTTP.RemoteAddr)
	if addErr != nil {
		return response.Error(addErr)
	}
	return d.certificateAdded(r, entry)
}

func (d *Daemon) passwordCertificate(r *route.Request, req api.CertificatesPost) response.Response {
	if r.Identity.Trusted() {
		return response.Error(errdefs.Invalidf("Client is already trusted"))
	}
	hash := d.config()["core.trust_password"]
	if hash == "" {
		return d.authFailure(r, "password", errdefs.Forbiddenf("Trust password authentication is disabled (core.trust_password is not set); use a trust token"))
	}
	ok, err := password.Verify(hash, req.Password)
	if err != nil {
		return response.Error(err)
	}
	if !ok {
		return d.authFailure(r, "password", errdefs.Forbiddenf("Wrong trust password"))
	}
	d.trust.limiter.Success(r.HTTP.RemoteAddr)
	if err := d.checkCertificateFields(req.Name, req.Type, req.Restricted, req.Projects); err != nil {
		return response.Error(err)
	}
	c, err := requestCertificate(r.HTTP, req.Certificate)
	if err != nil {
		return response.Error(err)
	}
	d.security("authn_trust_password_used", "warning", fmt.Sprintf("certificate %s added from %s with the legacy trust password", pki.Fingerprint(c), r.HTTP.RemoteAddr), r.Identity, "", r.HTTP)
	return d.addCertificate(r, c, req.Name, req.Type, req.Restricted, req.Projects)
}

// addCertificate validates c and stores it.
func (d *Daemon) addCertificate(r *route.Request, c *x509.Certificate, name, typ string, restricted bool, projects []string) response.Response {
	entry, err := d.certificateEntry(r, c, name, typ, restricted, projects)
	if err != nil {
		return response.Error(err)
	}
	if err := d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.CreateCertificate(entry) }); err != nil {
		return response.Error(err)
	}
	return d.certificateAdded(r, entry)
}

// certificateEntry validates c and builds its trust store entry.
func (d *Daemon) certificateEntry(r *route.Request, c *x509.Certificate, name, typ string, restricted bool, projects []string) (store.Certificate, error) {
	if err := d.checkCertificate(c); err != nil {
		return store.Certificate{}, err
	}
	if name == "" {
		name = c.Subject.CommonName
	}
	if name == "" {
		name, _, _ = net.SplitHostPort(r.HTTP.RemoteAddr)
	}
	if projects == nil {
		projects = []string{}
	}
	return store.Certificate{Fingerprint: pki.Fingerprint(c), Type: typ, Name: name, Certificate: certPEM(c), Restricted: restricted, Projects: projects}, nil
}

// certificateAdded refreshes the trust store cache after entry was
// stored, and announces it.
func (d *Daemon) certificateAdded(r *route.Request, entry store.Certificate) response.Response {
	if err := d.trust.reloadTrustStore(context.Background()); err != nil {
		return response.Error(err)
	}
	fp := entry.Fingerprint
	rq := r.Identity.Requestor()
	if rq == nil {
		rq = &api.Requestor{Username: fp, Protocol: "tls", Address: r.HTTP.RemoteAddr}
	}
	d.bus.Lifecycle("certificate-created", "/1.0/certificates/"+fp, "", rq, map[string]any{"name": entry.Name, "restricted": entry.Restricted, "projects": entry.Projects})
	return response.Created("/1.0/certificates/" + fp)
}

func (d *Daemon) putCertificate(r *route.Request) response.Response {
	return d.updateCertificate(r, false)
}

func (d *Daemon) patchCertificate(r *route.Request) response.Response {
	return d.updateCertificate(r, true)
}

func (d *Daemon) updateCertificate(r *route.Request, patch bool) response.Response {
	fp, err := d.resolveFingerprint(r.Var("fingerprint"))
	if err != nil {
		return response.Error(err)
	}
	cur, err := d.certificate(fp)
	if err != nil {
		return response.Error(err)
	}
	if err := r.CheckETag(certificateAPI(cur)); err != nil {
		return response.Error(err)
	}
	req := api.CertificatePut{}
	if patch {
		req = api.CertificatePut{Name: cur.Name, Type: cur.Type, Restricted: cur.Restricted, Projects: cur.Projects, Certificate: cur.Certificate}
	}
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if req.Type == "" {
		req.Type = cur.Type
	}
	if req.Type != cur.Type {
		return response.Error(errdefs.Forbiddenf("The certificate type cannot be changed"))
	}
	if req.Projects == nil {
		req.Projects = []string{}
	}
	next := cur
	if req.Certificate != "" {
		c, err := parseCertificateField(req.Certificate)
		if err != nil {
			return response.Error(err)
		}
		if pki.Fingerprint(c) != cur.Fingerprint {
			if err := d.checkCertificate(c); err != nil {
				return response.Error(err)
			}
			next.Fingerprint, next.Certificate = pki.Fingerprint(c), certPEM(c)
		}
	}
	// Only an identity manager may change name and restrictions; a
	// certificate updating itself may only replace the certificate.
	full := authz.Authorize(r.Identity, authz.CanCreateIdentities, authz.Entity{Type: authz.Server}) == nil
	if !full {
		if req.Name != cur.Name || req.Restricted != cur.Restricted || !sameSet(req.Projects, cur.Projects) {
			return response.Error(errdefs.Forbiddenf("Only the certificate can be changed"))
		}
	} else {
		if err := d.checkCertificateFields(req.Name, req.Type, req.Restricted, req.Projects); err != nil {
			return response.Error(err)
		}
		next.Name, next.Restricted, next.Projects = req.Name, req.Restricted, req.Projects
	}
	if err := d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.UpdateCertificate(fp, next) }); err != nil {
		return response.Error(err)
	}
	if err := d.trust.reloadTrustStore(context.Background()); err != nil {
		return response.Error(err)
	}
	if next.Fingerprint != fp {
		d.security("authn_certificate_change:"+fp, "info", fmt.Sprintf("certificate %s replaced by %s", fp, next.Fingerprint), r.Identity, "", r.HTTP)
	}
	d.bus.Lifecycle("certificate-updated", "/1.0/certificates/"+next.Fingerprint, "", r.Identity.Requestor(), nil)
	return response.EmptySync()
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func (d *Daemon) deleteCertificate(r *route.Request) response.Response {
	fp, err := d.resolveFingerprint(r.Var("fingerprint"))
	if err != nil {
		return response.Error(err)
	}
	if err := d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.DeleteCertificate(fp) }); err != nil {
		return response.Error(err)
	}
	if err := d.trust.reloadTrustStore(context.Background()); err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("certificate-deleted", "/1.0/certificates/"+fp, "", r.Identity.Requestor(), nil)
	return response.EmptySync()
}
