package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

type handshake struct {
	state tls.ConnectionState
	err   error
}

// serve accepts TLS connections on a loopback port, completes the
// handshake and reports its outcome on the returned channel (dropping
// outcomes nobody reads, for benchmarks).
func serve(t testing.TB, cfg *tls.Config) (string, <-chan handshake) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results := make(chan handshake, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				err := tc.Handshake()
				select {
				case results <- handshake{tc.ConnectionState(), err}:
				default:
				}
			}()
		}
	}()
	return ln.Addr().String(), results
}

// dial runs a client handshake and returns the client's state and the
// server's view of the same connection.
func dial(t *testing.T, addr string, cfg *tls.Config, results <-chan handshake) (client handshake, server handshake) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		// In TLS 1.3 the server finishes after the client; a read makes
		// sure the server has seen the client's certificate and Finished.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 1))
		client.state = c.ConnectionState()
		c.Close()
	}
	client.err = err
	select {
	case server = <-results:
	case <-time.After(10 * time.Second):
		t.Fatal("server handshake did not finish")
	}
	return client, server
}

func serverKeyPair(t testing.TB, key crypto.Signer) *tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func generatedKeyPair(t testing.TB, server bool) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := generateCert(server, "test@localhost", "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// clientConfig pins the server certificate the way lxc does: the
// certificate is the only root and the address is its IP SAN.
func clientConfig(server *tls.Certificate) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(server.Leaf)
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

func TestServerTLS13WithUnverifiedClientCert(t *testing.T) {
	srv, cli := generatedKeyPair(t, true), generatedKeyPair(t, false)
	addr, results := serve(t, ServerTLSConfig(NewServerCert(srv)))

	cfg := clientConfig(srv)
	cfg.Certificates = []tls.Certificate{*cli}
	cfg.NextProtos = []string{"http/1.1"}
	c, s := dial(t, addr, cfg, results)
	if c.err != nil || s.err != nil {
		t.Fatalf("handshake: client %v, server %v", c.err, s.err)
	}
	if c.state.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", c.state.Version)
	}
	if c.state.NegotiatedProtocol != "http/1.1" {
		t.Errorf("ALPN %q", c.state.NegotiatedProtocol)
	}
	// The self-signed client certificate is not verified at the
	// handshake but handed to the request layer.
	if len(s.state.PeerCertificates) != 1 || Fingerprint(s.state.PeerCertificates[0]) != Fingerprint(cli.Leaf) {
		t.Errorf("server saw %d peer certificates, want the client's", len(s.state.PeerCertificates))
	}
	if len(s.state.VerifiedChains) != 0 {
		t.Error("client certificate was verified at the handshake")
	}

	// A client without a certificate still gets in (untrusted surface).
	c, s = dial(t, addr, clientConfig(srv), results)
	if c.err != nil || s.err != nil || len(s.state.PeerCertificates) != 0 {
		t.Errorf("anonymous client: client %v, server %v, peer certs %d", c.err, s.err, len(s.state.PeerCertificates))
	}
}

func TestServerRefusesTLS12ByDefault(t *testing.T) {
	srv := generatedKeyPair(t, true)
	addr, results := serve(t, ServerTLSConfig(NewServerCert(srv)))

	cfg := clientConfig(srv)
	cfg.MaxVersion = tls.VersionTLS12
	c, s := dial(t, addr, cfg, results)
	if c.err == nil || s.err == nil {
		t.Fatalf("TLS 1.2 handshake succeeded (client %v, server %v)", c.err, s.err)
	}
	if !strings.Contains(c.err.Error(), "protocol version not supported") {
		t.Errorf("client error %q, want a protocol_version alert", c.err)
	}
}

// Suites a TLS 1.2 client may offer; allowed ones must be negotiated
// exactly, the others refused. Every refused suite is first shown to work
// against a permissive server, so the refusal is ours and not the
// client's.
func TestServerTLS12Option(t *testing.T) {
	ecCert := generatedKeyPair(t, true)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := serverKeyPair(t, rsaKey)

	allowed := map[uint16]*tls.Certificate{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       ecCert,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       ecCert,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: ecCert,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         rsaCert,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         rsaCert,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   rsaCert,
	}
	refused := map[uint16]*tls.Certificate{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:    ecCert,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:    ecCert,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: ecCert,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA:      rsaCert,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256:   rsaCert,
		tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA:     rsaCert,
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256:         rsaCert,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384:         rsaCert,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA:            rsaCert,
	}
	if len(allowed) != len(tls12Suites) {
		t.Fatalf("test covers %d suites, policy has %d", len(allowed), len(tls12Suites))
	}

	type server struct {
		addr    string
		results <-chan handshake
	}
	ours := map[*tls.Certificate]server{}
	permissive := map[*tls.Certificate]server{}
	for _, cert := range []*tls.Certificate{ecCert, rsaCert} {
		a, r := serve(t, ServerTLSConfig(NewServerCert(cert), AllowTLS12()))
		ours[cert] = server{a, r}
		var all []uint16
		for id := range refused {
			all = append(all, id)
		}
		a, r = serve(t, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12, CipherSuites: all})
		permissive[cert] = server{a, r}
	}
	tls12 := func(cert *tls.Certificate, suite uint16) *tls.Config {
		cfg := clientConfig(cert)
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{suite}
		return cfg
	}

	for suite, cert := range allowed {
		c, s := dial(t, ours[cert].addr, tls12(cert, suite), ours[cert].results)
		if c.err != nil || s.err != nil {
			t.Errorf("%s: client %v, server %v", tls.CipherSuiteName(suite), c.err, s.err)
			continue
		}
		if c.state.Version != tls.VersionTLS12 || c.state.CipherSuite != suite {
			t.Errorf("%s: negotiated %x/%s", tls.CipherSuiteName(suite), c.state.Version, tls.CipherSuiteName(c.state.CipherSuite))
		}
	}
	for suite, cert := range refused {
		name := tls.CipherSuiteName(suite)
		c, s := dial(t, permissive[cert].addr, tls12(cert, suite), permissive[cert].results)
		if c.err != nil || s.err != nil {
			t.Errorf("%s: control handshake failed (client %v, server %v); test is not meaningful", name, c.err, s.err)
			continue
		}
		c, s = dial(t, ours[cert].addr, tls12(cert, suite), ours[cert].results)
		if c.err == nil {
			t.Errorf("%s: accepted, negotiated %s", name, tls.CipherSuiteName(c.state.CipherSuite))
		}
		if s.err == nil || !strings.Contains(s.err.Error(), "cipher suite") {
			t.Errorf("%s: server error %v, want no shared cipher suite", name, s.err)
		}
	}

	// TLS 1.3 keeps working with the option.
	c, _ := dial(t, ours[ecCert].addr, clientConfig(ecCert), ours[ecCert].results)
	if c.err != nil || c.state.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3 with AllowTLS12: %v, version %x", c.err, c.state.Version)
	}
}

func TestServerCertHotSwap(t *testing.T) {
	first, second := generatedKeyPair(t, true), generatedKeyPair(t, true)
	holder := NewServerCert(first)
	addr, results := serve(t, ServerTLSConfig(holder))

	c, _ := dial(t, addr, clientConfig(first), results)
	if c.err != nil || Fingerprint(c.state.PeerCertificates[0]) != Fingerprint(first.Leaf) {
		t.Fatalf("first certificate: %v", c.err)
	}
	holder.Store(second)
	c, _ = dial(t, addr, clientConfig(second), results)
	if c.err != nil || Fingerprint(c.state.PeerCertificates[0]) != Fingerprint(second.Leaf) {
		t.Fatalf("after Store: %v", c.err)
	}
	// A client still pinning the old certificate is now refused.
	if c, _ := dial(t, addr, clientConfig(first), results); c.err == nil {
		t.Error("old pin still accepted after swap")
	}
}

// BenchmarkHandshakeTLS13P384 measures full (non-resumed) TLS 1.3
// handshakes over loopback with generated P-384 certificates on both
// sides, as an lxc client does.
func BenchmarkHandshakeTLS13P384(b *testing.B) {
	srv, cli := generatedKeyPair(b, true), generatedKeyPair(b, false)
	addr, _ := serve(b, ServerTLSConfig(NewServerCert(srv)))
	roots := x509.NewCertPool()
	roots.AddCert(srv.Leaf)
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{*cli}}

	start := time.Now()
	for b.Loop() {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
}
