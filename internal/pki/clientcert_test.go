package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckClientCert(t *testing.T) {
	rsa1024, rsa2048 := rsaKey(t, 1024), rsaKey(t, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)

	tests := []struct {
		name string
		opts leafOpts
		want error
	}{
		{"ecdsa p384", leafOpts{}, nil},
		{"ecdsa sha512", leafOpts{sigAlg: x509.ECDSAWithSHA512}, nil},
		{"rsa 2048", leafOpts{key: rsa2048}, nil},
		{"rsa-pss", leafOpts{key: rsa2048, sigAlg: x509.SHA384WithRSAPSS}, nil},
		{"ed25519", leafOpts{key: ed}, nil},
		{"rsa 1024", leafOpts{key: rsa1024}, ErrWeakRSAKey},
		{"sha1 rsa", leafOpts{key: rsa2048, sigAlg: x509.SHA1WithRSA}, ErrSignature},
		{"sha1 ecdsa", leafOpts{sigAlg: x509.ECDSAWithSHA1}, ErrSignature},
		{"expired", leafOpts{notBefore: t0.Add(-48 * time.Hour), notAfter: t0.Add(-time.Second)}, ErrExpired},
		{"not yet valid", leafOpts{notBefore: t0.Add(time.Second), notAfter: t0.Add(time.Hour)}, ErrNotYetValid},
	}
	for _, tt := range tests {
		cert := issue(t, nil, tt.opts)
		err := CheckClientCert(cert, t0)
		if tt.want == nil && err != nil {
			t.Errorf("%s: unexpected error %v", tt.name, err)
		}
		if tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestCheckClientCertBoundaries(t *testing.T) {
	c := issue(t, nil, leafOpts{notBefore: t0, notAfter: t0.Add(time.Hour)})
	if err := CheckClientCert(c, t0); err != nil {
		t.Errorf("at NotBefore: %v", err)
	}
	if err := CheckClientCert(c, t0.Add(time.Hour)); err != nil {
		t.Errorf("at NotAfter: %v", err)
	}
	if err := CheckClientCert(c, t0.Add(-time.Second)); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("before NotBefore: %v", err)
	}
	if err := CheckClientCert(c, t0.Add(time.Hour+time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("after NotAfter: %v", err)
	}
}

// The API returns the error text as is; it must start with the message
// LXD clients and scripts know.
func TestWeakRSAMessage(t *testing.T) {
	err := CheckClientCert(issue(t, nil, leafOpts{key: rsaKey(t, 1024)}), t0)
	const want = "RSA key is too weak (minimum of 2048bit)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want prefix %q", err, want)
	}
}
