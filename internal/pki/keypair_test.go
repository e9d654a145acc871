package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parsePEMCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no CERTIFICATE block in %q", data)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateCert(t *testing.T) {
	for _, server := range []bool{true, false} {
		certPEM, keyPEM, err := generateCert(server, "alice@box", "box", t0)
		if err != nil {
			t.Fatal(err)
		}
		c := parsePEMCert(t, certPEM)

		if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
			t.Errorf("server=%v: key %T, want ECDSA P-384", server, c.PublicKey)
		}
		if !c.NotBefore.Equal(t0.Add(-time.Minute)) || !c.NotAfter.Equal(c.NotBefore.Add(10*365*24*time.Hour)) {
			t.Errorf("server=%v: validity %v..%v", server, c.NotBefore, c.NotAfter)
		}
		if c.Subject.CommonName != "alice@box" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "Moat" {
			t.Errorf("server=%v: subject %v", server, c.Subject)
		}
		if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
			t.Errorf("server=%v: key usage %v", server, c.KeyUsage)
		}
		if !c.BasicConstraintsValid || c.IsCA {
			t.Errorf("server=%v: basic constraints valid=%v ca=%v", server, c.BasicConstraintsValid, c.IsCA)
		}
		if c.SerialNumber.BitLen() < 64 || c.SerialNumber.BitLen() > 128 {
			t.Errorf("server=%v: serial %x is not a random 128-bit number", server, c.SerialNumber)
		}
		wantEKU := x509.ExtKeyUsageClientAuth
		if server {
			wantEKU = x509.ExtKeyUsageServerAuth
		}
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != wantEKU {
			t.Errorf("server=%v: ext key usage %v", server, c.ExtKeyUsage)
		}
		if server {
			if len(c.DNSNames) != 1 || c.DNSNames[0] != "box" || len(c.IPAddresses) != 2 ||
				!c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
				t.Errorf("server SANs: %v %v", c.DNSNames, c.IPAddresses)
			}
		} else if len(c.DNSNames)+len(c.IPAddresses) != 0 {
			t.Errorf("client cert has SANs: %v %v", c.DNSNames, c.IPAddresses)
		}
		if err := CheckClientCert(c, t0); err != nil {
			t.Errorf("server=%v: own certificate fails client policy: %v", server, err)
		}
		if !strings.HasPrefix(string(keyPEM), "-----BEGIN EC PRIVATE KEY-----") {
			t.Errorf("key PEM type: %.40q", keyPEM)
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Errorf("server=%v: key does not match certificate: %v", server, err)
		}
	}
}

func TestLoadOrGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	certPath, keyPath := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")

	first, err := LoadOrGenerate(certPath, keyPath, true)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{keyPath: 0o600, certPath: 0o644, dir: 0o750} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %#o, want %#o", filepath.Base(path), got, want)
		}
	}
	if first.Leaf == nil || first.Leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("generated leaf: %+v", first.Leaf)
	}

	second, err := LoadOrGenerate(certPath, keyPath, true)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(first.Leaf) != Fingerprint(second.Leaf) {
		t.Error("second call generated a new certificate instead of loading")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("state dir has %d entries, want 2 (temp files left behind?)", len(entries))
	}

	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrGenerate(certPath, keyPath, true); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Errorf("world-readable key: err = %v, want mode error", err)
	}

	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrGenerate(certPath, keyPath, true); err == nil {
		t.Error("lone key file: want error, got nil")
	}
	if _, err := os.Stat(keyPath); err != nil {
		t.Errorf("lone key was touched: %v", err)
	}
}

// Known answer from an LXD trust store listing (lxd-wire/certificates-r1.json).
const lxdClientCert = `-----BEGIN CERTIFICATE-----
MIIB0DCCAVagAwIBAgIQWFVA3K9y0fEplMZF4/4GojAKBggqhkjOPQQDAzAwMRww
GgYDVQQKExNsaW51eGNvbnRhaW5lcnMub3JnMRAwDgYDVQQDDAdyb290QHZtMB4X
DTI2MTEyMjEyMzQwNFoXDTM2MTExOTEyMzQwNFowMDEcMBoGA1UEChMTbGludXhj
b250YWluZXJzLm9yZzEQMA4GA1UEAwwHcm9vdEB2bTB2MBAGByqGSM49AgEGBSuB
BAAiA2IABKTJKkyJRqws4aufZ67ClFii4MzsWW7W+VbOBwXZlqLS+nA98T3hRJ+f
z7B0t233eeFUL3XYzmkC2oZIGLrKEueVQWlKt1tn4r2ewToYMsmZpMbbooOoX7ey
AaAaFFpi/6M1MDMwDgYDVR0PAQH/BAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMC
MAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0EAwMDaAAwZQIwSd+3gz6qvRvxqd0MvQQp
UgO0rD/hSAmBrEJTDkKnwlTJKD5+ZelAtGdUE6E324NDAjEA4AbOqv6rHjSCI4Zj
N7J6FX61kPgbcVIUkt0qLGvDXNQxyKQVWJX6nApocV5EC76a
-----END CERTIFICATE-----
`

func TestFingerprint(t *testing.T) {
	c := parsePEMCert(t, []byte(lxdClientCert))
	const want = "a6ae5c5830a2b8f51b339d47e9bcbd65e69d8612a0f1373c515fd15a7388da0e"
	if got := Fingerprint(c); got != want {
		t.Errorf("Fingerprint = %s, want %s", got, want)
	}
}
