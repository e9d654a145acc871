package authn

import (
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/pki"
)

// Certificate types of the trust store.
const (
	CertTypeClient  = "client"
	CertTypeMetrics = "metrics"
)

// TrustEntry is a trust store entry as authentication needs it.
type TrustEntry struct {
	Fingerprint string
	Type        string
	Restricted  bool
	Projects    []string
	// DER is the stored certificate, compared in full with the presented
	// one (not just its fingerprint).
	DER []byte
}

// TLS authenticates HTTPS callers by their client certificate: the trust
// store, then (PKI mode) the CA.
type TLS struct {
	entries atomic.Pointer[map[string]TrustEntry]
	// CA is the PKI-mode CA (never nil; disabled when server.ca is absent).
	CA *pki.CA
	// TrustCA reports core.trust_ca_certificates.
	TrustCA func() bool
	Now     func() time.Time
}

// SetEntries replaces the trust store cache.
func (a *TLS) SetEntries(list []TrustEntry) {
	m := make(map[string]TrustEntry, len(list))
	for _, e := range list {
		m[e.Fingerprint] = e
	}
	a.entries.Store(&m)
}

// Entry returns the cached trust store entry of fingerprint.
func (a *TLS) Entry(fp string) (TrustEntry, bool) {
	m := a.entries.Load()
	if m == nil {
		return TrustEntry{}, false
	}
	e, ok := (*m)[fp]
	return e, ok
}

// Failure explains why a presented certificate was not accepted. It is
// empty when the caller is trusted or presented no certificate, or when
// the certificate is simply unknown (lxc presents its certificate before
// it is trusted, to redeem a token: that is not a failure by itself).
type Failure string

// Identify returns the identity of a TLS request.
func (a *TLS) Identify(r *http.Request) (*identity.Identity, Failure) {
	untrusted := &identity.Identity{Kind: identity.Untrusted, Address: r.RemoteAddr}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return untrusted, ""
	}
	untrusted.ClientCertificate = true
	// The leaf is the client's certificate; anything after it is chain.
	cert := r.TLS.PeerCertificates[0]
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	if err := pki.CheckClientCert(cert, now()); err != nil {
		return untrusted, Failure(err.Error())
	}
	fp := pki.Fingerprint(cert)
	if e, ok := a.Entry(fp); ok {
		if subtle.ConstantTimeCompare(e.DER, cert.Raw) != 1 {
			return untrusted, "certificate does not match the trust store entry"
		}
		// In PKI mode a trust store entry is not enough: the certificate
		// must chain to the CA and not be revoked.
		if a.CA != nil && a.CA.Enabled() {
			if err := a.CA.Verify(cert); err != nil {
				return untrusted, Failure("PKI: " + err.Error())
			}
		}
		if e.Type != CertTypeClient {
			// Metrics certificates only reach /1.0/metrics, which Moat
			// does not serve yet.
			return untrusted, "metrics certificate used on the API"
		}
		id := &identity.Identity{Kind: identity.TLSAdmin, Username: fp, Protocol: "tls", Address: r.RemoteAddr, ClientCertificate: true}
		if e.Restricted {
			id.Kind = identity.TLSRestricted
			id.Projects = e.Projects
		}
		return id, ""
	}
	if a.CA != nil && a.CA.Enabled() && a.TrustCA != nil && a.TrustCA() {
		err := a.CA.Verify(cert)
		if err == nil {
			return &identity.Identity{Kind: identity.PKIAdmin, Username: fp, Protocol: "pki", Address: r.RemoteAddr, ClientCertificate: true}, ""
		}
		if !errors.Is(err, pki.ErrUntrusted) {
			// Revoked, or the CRL is unusable: a real failure.
			return untrusted, Failure("PKI: " + err.Error())
		}
	}
	return untrusted, ""
}

// ParseCertificate is a helper for callers holding DER bytes.
func ParseCertificate(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }

// Entries returns the cached trust store entries.
func (a *TLS) Entries() []TrustEntry {
	m := a.entries.Load()
	if m == nil {
		return nil
	}
	out := make([]TrustEntry, 0, len(*m))
	for _, e := range *m {
		out = append(out, e)
	}
	return out
}
