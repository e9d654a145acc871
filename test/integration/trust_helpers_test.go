package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/pki"
	"github.com/moat/moat/internal/testdaemon"
	"github.com/moat/moat/internal/token"
)

// freePort returns a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// listenHTTPS sets core.https_address to a free loopback port and returns
// the base URL.
func listenHTTPS(t testing.TB, d *testdaemon.Daemon) (string, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": addr}}); r.Status != 200 {
		t.Fatalf("set core.https_address: %d %s", r.Status, r.Raw)
	}
	return "https://" + addr, addr
}

// clientCert generates a client key pair like lxc/moat do.
func clientCert(t testing.TB) tls.Certificate {
	t.Helper()
	c, k, err := pki.GenerateCert(false)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	kp.Leaf, _ = x509.ParseCertificate(kp.Certificate[0])
	return kp
}

func certFingerprint(c tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}

func certB64(c tls.Certificate) string { return base64.StdEncoding.EncodeToString(c.Certificate[0]) }

// tlsClient connects with cert (nil: none) and accepts any server
// certificate (tests check the fingerprint where it matters).
func tlsClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// newToken creates a trust token over the unix socket and returns the
// token string and the operation.
func newToken(t testing.TB, d *testdaemon.Daemon, req map[string]any) (string, api.Operation) {
	t.Helper()
	req["token"] = true
	if _, ok := req["type"]; !ok {
		req["type"] = "client"
	}
	r := d.Do("POST", "/1.0/certificates", req)
	if r.Status != 202 {
		t.Fatalf("create token: %d %s", r.Status, r.Raw)
	}
	var op api.Operation
	r.Metadata(t, &op)
	if op.Class != "token" {
		t.Fatalf("token operation class = %q", op.Class)
	}
	return encodeToken(t, op), op
}

func encodeToken(t testing.TB, op api.Operation) string {
	t.Helper()
	md := op.Metadata
	var addrs []string
	for _, a := range md["addresses"].([]any) {
		addrs = append(addrs, a.(string))
	}
	tok := token.Token{
		ClientName:  md["request"].(map[string]any)["name"].(string),
		Fingerprint: md["fingerprint"].(string),
		Addresses:   addrs,
		Secret:      md["secret"].(string),
	}
	if e, ok := md["expiresAt"].(string); ok {
		tok.ExpiresAt, _ = time.Parse(time.RFC3339Nano, e)
	}
	s, err := token.Encode(tok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testCA is a throw-away CA for PKI mode tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) issue(t testing.TB, serial int64) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprintf("client-%d", serial)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) writeCert(t testing.TB, path string) {
	t.Helper()
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
}

func (ca *testCA) writeCRL(t testing.TB, path string, serials ...int64) {
	t.Helper()
	var revoked []x509.RevocationListEntry
	for _, s := range serials {
		revoked = append(revoked, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: revoked,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// authOf returns GET /1.0's auth and auth_user_method for client.
func authOf(t testing.TB, c *http.Client, base string) (string, string) {
	t.Helper()
	r := testdaemon.DoWith(t, c, "GET", base+"/1.0", nil, nil)
	var s struct {
		Auth   string `json:"auth"`
		Method string `json:"auth_user_method"`
	}
	r.Metadata(t, &s)
	return s.Auth, s.Method
}
