package client

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultHTTPSPort is the port of an HTTPS address given without one.
const DefaultHTTPSPort = "8443"

// HTTPSArgs are the options of an HTTPS connection.
type HTTPSArgs struct {
	ConnectArgs

	// TLSClientCert and TLSClientKey are the client key pair (PEM). Without
	// them the client is anonymous (untrusted).
	TLSClientCert, TLSClientKey string

	// TLSServerCert is the pinned server certificate (PEM): it becomes the
	// only root and the expected name is taken from it, so the server
	// must present exactly this certificate (or one it signed, which
	// needs its private key).
	TLSServerCert string

	// TLSCA (PEM), when set, replaces pinning (PKI mode): the server
	// certificate must chain to this CA and name the host of the URL.
	TLSCA string
}

// ServerCertificateError says the server presented a certificate that does
// not verify against the pinned certificate (or the CA in PKI mode).
type ServerCertificateError struct {
	Addr string
	// Presented is the certificate the server sent (nil if unknown).
	Presented *x509.Certificate
	// Pinned is the expected certificate (nil in PKI mode).
	Pinned *x509.Certificate
	Err    error
}

func (e *ServerCertificateError) Error() string {
	got := "unknown"
	if e.Presented != nil {
		got = CertFingerprint(e.Presented)
	}
	if e.Pinned != nil {
		return fmt.Sprintf("the server at %s presented certificate %s, not the pinned certificate %s: "+
			"someone may be intercepting the connection (man-in-the-middle), or the server's certificate was replaced; "+
			"nothing was sent. Verify the new fingerprint with the server's administrator before trusting it again", e.Addr, got, CertFingerprint(e.Pinned))
	}
	return fmt.Sprintf("the server at %s presented certificate %s, which the CA (client.ca) does not validate: %v; "+
		"someone may be intercepting the connection", e.Addr, got, e.Err)
}

func (e *ServerCertificateError) Unwrap() error { return e.Err }

// CertFingerprint is the lower-case hex SHA-256 of the certificate's DER
// encoding, the form of fingerprints everywhere in the API.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseCertPEM parses the first CERTIFICATE block of buf.
func ParseCertPEM(buf []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, buf = pem.Decode(buf)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block found")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// CertPEM encodes c as PEM.
func CertPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// NormalizeHTTPSURL turns "host", "host:port" or "https://host[:port]"
// into "https://host:port", the port defaulting to 8443.
func NormalizeHTTPSURL(addr string) (string, error) {
	s := addr
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid remote address %q: %w", addr, err)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("invalid remote address %q: only https:// remotes are supported", addr)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("invalid remote address %q: want https://HOST[:PORT]", addr)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = DefaultHTTPSPort
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// serverName is the name verified in a pinned certificate: its first DNS
// SAN, else its first IP SAN, else its common name.
func serverName(c *x509.Certificate) string {
	switch {
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return c.Subject.CommonName
}

// tlsConfig builds the client TLS configuration of args.
func (args *HTTPSArgs) tlsConfig() (*tls.Config, *x509.Certificate, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if args.TLSClientCert != "" || args.TLSClientKey != "" {
		kp, err := tls.X509KeyPair([]byte(args.TLSClientCert), []byte(args.TLSClientKey))
		if err != nil {
			return nil, nil, fmt.Errorf("client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	var pinned *x509.Certificate
	switch {
	case args.TLSCA != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(args.TLSCA)) {
			return nil, nil, errors.New("client CA: no certificate found")
		}
		cfg.RootCAs = pool
	case args.TLSServerCert != "":
		c, err := ParseCertPEM([]byte(args.TLSServerCert))
		if err != nil {
			return nil, nil, fmt.Errorf("pinned server certificate: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(c)
		cfg.RootCAs = pool
		cfg.ServerName = serverName(c)
		pinned = c
	default:
		return nil, nil, errors.New("no server certificate to verify the server with: pin one (TLSServerCert) or give a CA (TLSCA)")
	}
	return cfg, pinned, nil
}

// ConnectHTTPS returns a client for the moatd at rawURL
// (https://host[:port]), authenticating with the client key pair and
// verifying the server against the pinned certificate or, in PKI mode, the
// CA. Like ConnectUnix it does not contact the server.
func ConnectHTTPS(rawURL string, args *HTTPSArgs) (*Client, error) {
	if args == nil {
		args = &HTTPSArgs{}
	}
	base, err := NormalizeHTTPSURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg, pinned, err := args.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		// HTTP/1.1 only: websockets (events, exec) need it, and one
		// transport serves both.
		ForceAttemptHTTP2: false,
	}
	rt := &verifyingTransport{inner: tr, addr: base, pinned: pinned}
	return newClient(base, base, rt, &args.ConnectArgs), nil
}

// verifyingTransport turns a failed server verification into a
// ServerCertificateError naming the presented certificate.
type verifyingTransport struct {
	inner  *http.Transport
	addr   string
	pinned *x509.Certificate
}

func (t *verifyingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(r)
	if err != nil {
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) {
			se := &ServerCertificateError{Addr: t.addr, Pinned: t.pinned, Err: ve.Err}
			if len(ve.UnverifiedCertificates) > 0 {
				se.Presented = ve.UnverifiedCertificates[0]
			}
			return nil, se
		}
	}
	return resp, err
}

// GetServerCertificate connects to the HTTPS server at rawURL without
// verifying it and returns the certificate it presents, for the
// first-connection fingerprint check. Nothing is sent but the handshake.
func GetServerCertificate(ctx context.Context, rawURL string) (*x509.Certificate, error) {
	base, err := NormalizeHTTPSURL(rawURL)
	if err != nil {
		return nil, err
	}
	host := strings.TrimPrefix(base, "https://")
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		// The certificate is returned for the caller to check against a
		// fingerprint; nothing is trusted or sent on this connection.
		Config: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}, //nolint:gosec
	}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", base, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s presented no certificate", base)
	}
	return certs[0], nil
}
