package integration

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// BenchmarkTrustTokenRedeem measures POST /1.0/certificates redeeming a
// token over TLS (one new client certificate and connection each time;
// token creation over the unix socket is not timed).
func BenchmarkTrustTokenRedeem(b *testing.B) {
	d := testdaemon.Start(b)
	base, _ := listenHTTPS(b, d)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tok, _ := newToken(b, d, map[string]any{"name": "bench"})
		c := clientCert(b)
		cl := tlsClient(&c)
		b.StartTimer()
		r := testdaemon.DoWith(b, cl, "POST", base+"/1.0/certificates", map[string]any{"trust_token": tok}, nil)
		if r.Status != 201 {
			b.Fatalf("redeem: %d %s", r.Status, r.Raw)
		}
	}
}

// BenchmarkTrustTokenRedeemPOST measures the redemption request alone, the
// way lxc remote add makes it: the new client has already connected (its
// untrusted GET /1.0), and POST /1.0/certificates goes over that
// connection. The handshake is measured by BenchmarkTrustTLSHandshake.
func BenchmarkTrustTokenRedeemPOST(b *testing.B) {
	d := testdaemon.Start(b)
	base, _ := listenHTTPS(b, d)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tok, _ := newToken(b, d, map[string]any{"name": "bench"})
		c := clientCert(b)
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{c}}}}
		if auth, _ := authOf(b, cl, base); auth != "untrusted" {
			b.Fatalf("new client is %q before redeeming", auth)
		}
		b.StartTimer()
		r := testdaemon.DoWith(b, cl, "POST", base+"/1.0/certificates", map[string]any{"trust_token": tok}, nil)
		if r.Status != 201 {
			b.Fatalf("redeem: %d %s", r.Status, r.Raw)
		}
		b.StopTimer()
		cl.CloseIdleConnections()
		b.StartTimer()
	}
}

// BenchmarkTrustGET10 measures GET /1.0 over TLS by a trusted client on a
// kept-alive connection.
func BenchmarkTrustGET10(b *testing.B) {
	d := testdaemon.Start(b)
	base, _ := listenHTTPS(b, d)
	c := clientCert(b)
	if r := d.Do("POST", "/1.0/certificates", map[string]any{"type": "client", "certificate": certB64(c)}); r.Status != 201 {
		b.Fatal(string(r.Raw))
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{c}}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := testdaemon.DoWith(b, cl, "GET", base+"/1.0", nil, nil)
		if r.Status != 200 || !strings.Contains(string(r.Raw), `"auth":"trusted"`) {
			b.Fatalf("GET /1.0: %d", r.Status)
		}
	}
}

// BenchmarkTrustTLSHandshake measures full TLS 1.3 handshakes with a client
// certificate (report handshakes/s = 1e9 / ns/op).
func BenchmarkTrustTLSHandshake(b *testing.B) {
	d := testdaemon.Start(b)
	_, addr := listenHTTPS(b, d)
	c := clientCert(b)
	cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{c}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
