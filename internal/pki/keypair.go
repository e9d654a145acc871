// Package pki holds the TLS trust primitives of the remote API: key pair
// generation, the server TLS configuration, the client certificate policy
// and the optional CA (PKI mode) with its revocation list.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

// certValidity is the lifetime of generated certificates. It matches what
// LXD clients generate and expect, so a Moat server and an lxc client can
// trust each other's self-signed certificates the same way.
const certValidity = 10 * 365 * 24 * time.Hour

// GenerateCert creates a self-signed ECDSA P-384 certificate and key, PEM
// encoded. Server certificates carry ExtKeyUsage ServerAuth and SANs for
// the host name and the loopback addresses; client certificates carry
// ClientAuth and no SANs.
func GenerateCert(server bool) (certPEM, keyPEM []byte, err error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return generateCert(server, name+"@"+host, host, time.Now())
}

func generateCert(server bool, cn, host string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial: %w", err)
	}
	// Backdate a little so a peer whose clock is slightly behind does not
	// reject the certificate as not yet valid.
	notBefore := now.Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Moat"}, CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{host}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// LoadOrGenerate loads the key pair at certPath and keyPath, generating
// and writing a new one (key 0600, certificate 0644, directories 0750) if
// neither file exists. If only one of them exists it fails rather than
// overwrite what might be an operator's key.
func LoadOrGenerate(certPath, keyPath string, server bool) (*tls.Certificate, error) {
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certExists && keyExists:
		return load(certPath, keyPath)
	case certExists || keyExists:
		return nil, fmt.Errorf("only one of %s and %s exists; remove it or provide the other", certPath, keyPath)
	}

	certPEM, keyPEM, err := GenerateCert(server)
	if err != nil {
		return nil, err
	}
	// Key first: a crash in between leaves a lone key, which the check
	// above refuses to silently replace.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func load(certPath, keyPath string) (*tls.Certificate, error) {
	// Like sshd, refuse a private key that other users can read or
	// replace. Group read is tolerated for deployments that share keys
	// through a dedicated group.
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, err
	}
	if mode := fi.Mode().Perm(); mode&0o027 != 0 {
		return nil, fmt.Errorf("private key %s has mode %#o; it must not be group-writable or accessible by others", keyPath, mode)
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("loading key pair: %w", err)
	}
	return &c, nil
}

// writeFileAtomic writes data to a temporary file in the destination
// directory and renames it into place, so readers never see a partial
// file and the mode is right from the first byte.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
