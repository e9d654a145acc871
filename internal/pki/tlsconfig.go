package pki

import (
	"crypto/tls"
	"errors"
	"sync/atomic"
)

// ServerCert holds the server's key pair so it can be replaced at run time
// (renewal, ACME, cluster certificate update) without restarting the
// listener: connections established after Store use the new pair.
type ServerCert struct {
	p atomic.Pointer[tls.Certificate]
}

// NewServerCert returns a holder serving c.
func NewServerCert(c *tls.Certificate) *ServerCert {
	s := &ServerCert{}
	s.Store(c)
	return s
}

// Store replaces the key pair. It panics on nil, which would otherwise
// fail every handshake later and far from the mistake.
func (s *ServerCert) Store(c *tls.Certificate) {
	if c == nil {
		panic("pki: nil server certificate")
	}
	s.p.Store(c)
}

// Load returns the current key pair.
func (s *ServerCert) Load() *tls.Certificate { return s.p.Load() }

var errNoServerCert = errors.New("no server certificate")

func (s *ServerCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.p.Load(); c != nil {
		return c, nil
	}
	return nil, errNoServerCert
}

// tls12Suites are the only TLS 1.2 suites offered when TLS 1.2 is enabled:
// forward secret key exchange and AEAD ciphers. TLS 1.3 suites are all
// AEAD and not configurable in Go.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSOption adjusts the server TLS configuration.
type TLSOption func(*tls.Config)

// AllowTLS12 lowers the minimum protocol version to TLS 1.2 for old
// clients, restricted to ECDHE key exchange with AES-GCM or
// ChaCha20-Poly1305.
func AllowTLS12() TLSOption {
	return func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = tls12Suites
	}
}

// ServerTLSConfig returns the TLS configuration of the HTTPS listener. It
// accepts TLS 1.3 only unless AllowTLS12 is given. Client certificates are
// requested but not verified during the handshake: trust is decided per
// request (trust store, CA, tokens), so an untrusted client can still
// reach the endpoints that allow it, such as token redemption.
func ServerTLSConfig(cert *ServerCert, opts ...TLSOption) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequestClientCert,
		GetCertificate: cert.getCertificate,
		NextProtos:     []string{"http/1.1"},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}
