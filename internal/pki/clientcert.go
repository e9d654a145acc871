package pki

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Client certificate policy errors. Handlers can match them with
// errors.Is; their texts are the ones LXD returns to API clients.
var (
	ErrNotYetValid = errors.New("certificate is not valid yet")
	ErrExpired     = errors.New("certificate has expired")
	ErrWeakRSAKey  = errors.New("RSA key is too weak (minimum of 2048bit)")
	ErrSignature   = errors.New("certificate signature algorithm not allowed (SHA-2 or Ed25519 required)")
)

const minRSABits = 2048

// allowedSignatures is the SHA-2 family plus Ed25519. A pinned self-signed
// certificate's own signature is never relied on, but one policy for
// pinned and CA-issued certificates is simpler to reason about, and a
// client still producing SHA-1 certificates is running obsolete tooling.
var allowedSignatures = map[x509.SignatureAlgorithm]bool{
	x509.SHA256WithRSA:    true,
	x509.SHA384WithRSA:    true,
	x509.SHA512WithRSA:    true,
	x509.SHA256WithRSAPSS: true,
	x509.SHA384WithRSAPSS: true,
	x509.SHA512WithRSAPSS: true,
	x509.ECDSAWithSHA256:  true,
	x509.ECDSAWithSHA384:  true,
	x509.ECDSAWithSHA512:  true,
	x509.PureEd25519:      true,
}

// CheckClientCert applies the acceptance policy for client certificates
// presented at now: within the validity period, SHA-2 (or Ed25519)
// signature, and RSA keys of at least 2048 bits. Any key type is otherwise
// accepted.
func CheckClientCert(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("%w (not before %s)", ErrNotYetValid, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("%w (not after %s)", ErrExpired, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if !allowedSignatures[cert.SignatureAlgorithm] {
		return fmt.Errorf("%w: %v", ErrSignature, cert.SignatureAlgorithm)
	}
	if k, ok := cert.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < minRSABits {
		return fmt.Errorf("%w: %d bits", ErrWeakRSAKey, k.N.BitLen())
	}
	return nil
}
