package integration

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

func TestTrustHTTPSListener(t *testing.T) {
	d := testdaemon.Start(t)

	// Server key pair: P-384, SANs, key 0600.
	fi, err := os.Stat(filepath.Join(d.Dir, "server.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("server.key: %v mode %v", err, fi.Mode())
	}
	raw, _ := os.ReadFile(filepath.Join(d.Dir, "server.crt"))
	b, _ := pem.Decode(raw)
	sc, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := sc.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
		t.Fatalf("server key is not P-384: %T", sc.PublicKey)
	}
	if len(sc.IPAddresses) != 2 || !sc.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(sc.DNSNames) != 1 {
		t.Fatalf("server SANs: %v %v", sc.DNSNames, sc.IPAddresses)
	}

	// A bad address is refused naming the key, and nothing changes.
	if r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": "127.0.0.1:99999"}}); r.Status != 400 || !strings.Contains(r.Body.Error, "core.https_address") {
		t.Fatalf("bad address: %d %s", r.Status, r.Raw)
	}

	base, addr := listenHTTPS(t, d)
	anon := tlsClient(nil)
	r := testdaemon.DoWith(t, anon, "GET", base+"/1.0", nil, nil)
	var m map[string]any
	r.Metadata(t, &m)
	want := capture(t, "https-untrusted-1.0.json")["metadata"].(map[string]any)
	for k := range keysOf(want) {
		if _, ok := m[k]; !ok {
			t.Errorf("untrusted GET /1.0 lacks %q", k)
		}
	}
	for k := range m {
		if _, ok := want[k]; !ok && k != "client_certificate" {
			t.Errorf("untrusted GET /1.0 shows %q, LXD does not", k)
		}
	}
	if m["auth"] != "untrusted" || fmt.Sprint(m["auth_methods"]) != "[tls]" {
		t.Fatalf("untrusted view: %v", m)
	}
	if r := testdaemon.DoWith(t, anon, "GET", base+"/1.0/certificates", nil, nil); r.Status != 403 {
		t.Fatalf("untrusted /1.0/certificates: %d", r.Status)
	}
	// Admin view lists the address and the server certificate.
	var srv api.Server
	d.Do("GET", "/1.0", nil).Metadata(t, &srv)
	if fmt.Sprint(srv.Environment.Addresses) != "["+addr+"]" || srv.Environment.CertificateFingerprint == "" || !strings.Contains(srv.Environment.Certificate, "BEGIN CERTIFICATE") {
		t.Fatalf("environment: %v %q", srv.Environment.Addresses, srv.Environment.CertificateFingerprint)
	}

	// Plain HTTP on the TLS port gets an error, not data.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(bufio.NewReader(c))
	c.Close()
	if !strings.HasPrefix(string(reply), "HTTP/1.0 400") || !strings.Contains(string(reply), "Client sent an HTTP request to an HTTPS server") || strings.Contains(string(reply), "api_extensions") {
		t.Fatalf("plain HTTP reply: %q", reply)
	}

	// TLS 1.3 only by default.
	dialTLS := func(cfg *tls.Config) error {
		cfg.InsecureSkipVerify = true
		conn, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dialTLS(&tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("TLS 1.2 handshake accepted by default")
	}
	if err := dialTLS(&tls.Config{MinVersion: tls.VersionTLS13}); err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
	// Opt-in TLS 1.2: AEAD ECDHE only.
	if r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.tls_allow_tls12": "true"}}); r.Status != 200 {
		t.Fatalf("tls12 on: %s", r.Raw)
	}
	if err := dialTLS(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}); err != nil {
		t.Fatalf("TLS 1.2 after opt-in: %v", err)
	}
	if err := dialTLS(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		t.Fatal("TLS 1.2 CBC suite accepted")
	}

	// Move, then close, without a restart.
	base2, addr2 := listenHTTPS(t, d)
	if a, _ := authOf(t, anon, base2); a != "untrusted" {
		t.Fatalf("moved listener: auth %q", a)
	}
	time.Sleep(200 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("old address %s still listening after the move", addr)
	}
	if r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": ""}}); r.Status != 200 {
		t.Fatalf("unset: %s", r.Raw)
	}
	time.Sleep(200 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr2, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still open after unsetting core.https_address")
	}
	// Deleting the key pair and restarting generates a new one.
	d.Stop()
	os.Remove(filepath.Join(d.Dir, "server.crt"))
	os.Remove(filepath.Join(d.Dir, "server.key"))
	d.Restart()
	raw2, err := os.ReadFile(filepath.Join(d.Dir, "server.crt"))
	if err != nil || string(raw2) == string(raw) {
		t.Fatalf("no new server certificate after restart: %v", err)
	}
}

func TestTrustTokenRedeemAndReuse(t *testing.T) {
	d := testdaemon.Start(t)
	// No listener: no token.
	if r := d.Do("POST", "/1.0/certificates", map[string]any{"name": "x", "type": "client", "token": true}); r.Status != 400 || !strings.Contains(r.Body.Error, "not listening") {
		t.Fatalf("token without listener: %d %s", r.Status, r.Raw)
	}
	base, _ := listenHTTPS(t, d)
	// Bad input names the field.
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": "", "type": "client", "token": true}, "name"},
		{map[string]any{"name": "x", "type": "client", "token": true, "projects": []string{"default"}}, "projects"},
		{map[string]any{"name": "x", "type": "client", "token": true, "restricted": true, "projects": []string{"nope"}}, "projects"},
		{map[string]any{"name": "a/b", "type": "client", "token": true}, "name"},
	} {
		if r := d.Do("POST", "/1.0/certificates", tc.body); r.Status != 400 || !strings.Contains(r.Body.Error, tc.field) {
			t.Errorf("%v: %d %s", tc.body, r.Status, r.Raw)
		}
	}
	ev := dialEvents(t, d, "?type=security,lifecycle")
	d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "p1"})
	tok, op := newToken(t, d, map[string]any{"name": "alice", "restricted": true, "projects": []string{"p1"}})
	if op.Metadata["expiresAt"] == nil || !op.MayCancel {
		t.Fatalf("token op: %+v", op)
	}
	exp, _ := time.Parse(time.RFC3339Nano, op.Metadata["expiresAt"].(string))
	if d := time.Until(exp); d < 14*time.Minute || d > 16*time.Minute {
		t.Fatalf("default expiry is %s, want 15M", d)
	}

	alice := clientCert(t)
	ac := tlsClient(&alice)
	if a, _ := authOf(t, ac, base); a != "untrusted" {
		t.Fatal("unknown certificate trusted")
	}
	// LXD 5.0.2 sends the whole token in "password"; the redeemer's own
	// name and restrictions are ignored in favour of the token's.
	r := testdaemon.DoWith(t, ac, "POST", base+"/1.0/certificates", map[string]any{"password": tok, "type": "", "name": "evil", "restricted": false}, nil)
	if r.Status != 201 || r.Header.Get("Location") != "/1.0/certificates/"+certFingerprint(alice) {
		t.Fatalf("redeem: %d %s %v", r.Status, r.Raw, r.Header)
	}
	if a, m := authOf(t, ac, base); a != "trusted" || m != "tls" {
		t.Fatalf("after redeem: %s %s", a, m)
	}
	var cert api.Certificate
	d.Do("GET", "/1.0/certificates/"+certFingerprint(alice)[:12], nil).Metadata(t, &cert)
	if cert.Name != "alice" || !cert.Restricted || fmt.Sprint(cert.Projects) != "[p1]" {
		t.Fatalf("stored certificate: %+v", cert)
	}
	nextEvent(t, ev, func(e api.Event) bool {
		return e.Type == "lifecycle" && strings.Contains(string(e.Metadata), "certificate-created")
	})

	// Single use: a second client with the same token is refused and the
	// replay is audited.
	bob := clientCert(t)
	bc := tlsClient(&bob)
	r = testdaemon.DoWith(t, bc, "POST", base+"/1.0/certificates", map[string]any{"type": "client", "trust_token": tok}, nil)
	if r.Status != 403 || r.Body.Error != "No matching certificate add operation found" {
		t.Fatalf("reused token: %d %s", r.Status, r.Raw)
	}
	nextEvent(t, ev, func(e api.Event) bool {
		return e.Type == "security" && strings.Contains(string(e.Metadata), "authn_token_reuse")
	})
	if a, _ := authOf(t, bc, base); a != "untrusted" {
		t.Fatal("reused token trusted a second certificate")
	}

	// Expired tokens are refused and consumed.
	d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.remote_token_expiry": "1S"}})
	tok2, _ := newToken(t, d, map[string]any{"name": "late"})
	time.Sleep(1100 * time.Millisecond)
	r = testdaemon.DoWith(t, bc, "POST", base+"/1.0/certificates", map[string]any{"type": "client", "trust_token": tok2}, nil)
	if r.Status != 403 || r.Body.Error != "Token has expired" {
		t.Fatalf("expired token: %d %s", r.Status, r.Raw)
	}
	r = testdaemon.DoWith(t, bc, "POST", base+"/1.0/certificates", map[string]any{"type": "client", "trust_token": tok2}, nil)
	if r.Status != 403 || r.Body.Error != "No matching certificate add operation found" {
		t.Fatalf("expired token, second try: %d %s", r.Status, r.Raw)
	}
}

func TestTrustTokenSurvivesRestartAndRevoke(t *testing.T) {
	d := testdaemon.Start(t)
	base, _ := listenHTTPS(t, d)
	tok, op := newToken(t, d, map[string]any{"name": "persist"})
	_, op2 := newToken(t, d, map[string]any{"name": "revokeme"})
	d.Stop()
	d.Restart()

	var ops map[string][]api.Operation
	d.Do("GET", "/1.0/operations?recursion=1&project=default", nil).Metadata(t, &ops)
	found := map[string]bool{}
	for _, o := range ops["running"] {
		if o.Class == "token" && o.Metadata["secret"] != nil {
			found[o.ID] = true
		}
	}
	if !found[op.ID] || !found[op2.ID] {
		t.Fatalf("token operations after restart: %+v", ops)
	}
	// Revoke one: DELETE the operation.
	if r := d.Do("DELETE", "/1.0/operations/"+op2.ID, nil); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	revoked := encodeToken(t, op2)
	c := clientCert(t)
	cc := tlsClient(&c)
	if r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"trust_token": revoked}, nil); r.Status != 403 {
		t.Fatalf("revoked token: %d %s", r.Status, r.Raw)
	}
	d.Stop()
	d.Restart()
	if r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"trust_token": tok}, nil); r.Status != 201 {
		t.Fatalf("token after restart: %d %s", r.Status, r.Raw)
	}
	if a, _ := authOf(t, cc, base); a != "trusted" {
		t.Fatal("not trusted after redeeming a token issued before a restart")
	}
}

// LXD 5.0.2 shows a pending token's secret to a restricted certificate via
// /1.0/operations, which can then redeem it into an unrestricted
// certificate. In Moat the restricted certificate never sees the token.
func TestTrustRestrictedCannotEscalateViaTokens(t *testing.T) {
	d := testdaemon.Start(t)
	base, _ := listenHTTPS(t, d)
	// The restricted certificate is confined to "default", where LXD
	// files token operations: the worst case.
	rc := clientCert(t)
	if r := d.Do("POST", "/1.0/certificates", map[string]any{"name": "r", "type": "client", "restricted": true, "projects": []string{"default"}, "certificate": certB64(rc)}); r.Status != 201 {
		t.Fatalf("add restricted: %d %s", r.Status, r.Raw)
	}
	restricted := tlsClient(&rc)
	_, op := newToken(t, d, map[string]any{"name": "admin-to-be"})

	// The attack: find the token's secret.
	for _, path := range []string{
		"/1.0/operations?recursion=1", "/1.0/operations?recursion=1&project=default",
		"/1.0/operations", "/1.0/operations?all-projects=true&recursion=1",
		"/1.0/operations/" + op.ID, "/1.0/operations/" + op.ID + "/wait?timeout=0",
	} {
		r := testdaemon.DoWith(t, restricted, "GET", base+path, nil, nil)
		if strings.Contains(string(r.Raw), op.ID) || strings.Contains(string(r.Raw), op.Metadata["secret"].(string)) {
			t.Fatalf("restricted certificate sees the token via %s: %s", path, r.Raw)
		}
	}
	if r := testdaemon.DoWith(t, restricted, "GET", base+"/1.0/operations/"+op.ID, nil, nil); r.Status != 404 {
		t.Fatalf("GET token op as restricted: %d", r.Status)
	}
	if r := testdaemon.DoWith(t, restricted, "DELETE", base+"/1.0/operations/"+op.ID, nil, nil); r.Status != 404 {
		t.Fatalf("DELETE token op as restricted: %d", r.Status)
	}
	// Nor can it mint a token or an unrestricted certificate itself, or
	// lift its own restriction.
	if r := testdaemon.DoWith(t, restricted, "POST", base+"/1.0/certificates", map[string]any{"name": "x", "type": "client", "token": true}, nil); r.Status != 403 {
		t.Fatalf("restricted creates token: %d %s", r.Status, r.Raw)
	}
	other := clientCert(t)
	if r := testdaemon.DoWith(t, restricted, "POST", base+"/1.0/certificates", map[string]any{"name": "x", "type": "client", "certificate": certB64(other)}, nil); r.Status != 403 {
		t.Fatalf("restricted adds certificate: %d %s", r.Status, r.Raw)
	}
	fp := certFingerprint(rc)
	if r := testdaemon.DoWith(t, restricted, "PATCH", base+"/1.0/certificates/"+fp, map[string]any{"restricted": false}, nil); r.Status != 403 {
		t.Fatalf("restricted lifts its restriction: %d %s", r.Status, r.Raw)
	}
	// It sees only itself among certificates.
	adminCert := clientCert(t)
	d.Do("POST", "/1.0/certificates", map[string]any{"name": "adm", "type": "client", "certificate": certB64(adminCert)})
	var list []string
	testdaemon.DoWith(t, restricted, "GET", base+"/1.0/certificates", nil, nil).Metadata(t, &list)
	if len(list) != 1 || !strings.HasSuffix(list[0], fp) {
		t.Fatalf("restricted lists certificates: %v", list)
	}
	if r := testdaemon.DoWith(t, restricted, "GET", base+"/1.0/certificates/"+certFingerprint(adminCert), nil, nil); r.Status != 404 {
		t.Fatalf("restricted reads another certificate: %d", r.Status)
	}
	// Server config edit and project edit are refused.
	if r := testdaemon.DoWith(t, restricted, "PATCH", base+"/1.0", map[string]any{"config": map[string]string{"user.x": "1"}}, nil); r.Status != 403 {
		t.Fatalf("restricted edits server config: %d", r.Status)
	}

	// The legitimate paths work: the admin (unix and an unrestricted
	// certificate) sees the secret; the restricted certificate may replace
	// its own certificate.
	admin := tlsClient(&adminCert)
	r := testdaemon.DoWith(t, admin, "GET", base+"/1.0/operations/"+op.ID, nil, nil)
	if r.Status != 200 || !strings.Contains(string(r.Raw), op.Metadata["secret"].(string)) {
		t.Fatalf("admin cannot see the token: %d %s", r.Status, r.Raw)
	}
	newRC := clientCert(t)
	ev := dialEvents(t, d, "?type=security")
	r = testdaemon.DoWith(t, restricted, "PATCH", base+"/1.0/certificates/"+fp, map[string]any{"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newRC.Certificate[0]}))}, nil)
	if r.Status != 200 {
		t.Fatalf("self certificate replacement: %d %s", r.Status, r.Raw)
	}
	nextEvent(t, ev, func(e api.Event) bool {
		return strings.Contains(string(e.Metadata), "authn_certificate_change:"+fp)
	})
	if a, _ := authOf(t, tlsClient(&newRC), base); a != "trusted" {
		t.Fatal("replaced certificate not trusted")
	}
	var c api.Certificate
	d.Do("GET", "/1.0/certificates/"+certFingerprint(newRC), nil).Metadata(t, &c)
	if !c.Restricted || c.Name != "r" {
		t.Fatalf("replacement changed restrictions: %+v", c)
	}
	// And it may remove itself.
	if r := testdaemon.DoWith(t, tlsClient(&newRC), "DELETE", base+"/1.0/certificates/"+certFingerprint(newRC), nil, nil); r.Status != 200 {
		t.Fatalf("self delete: %d %s", r.Status, r.Raw)
	}
}

func TestTrustThrottleAndSecurityEvents(t *testing.T) {
	d := testdaemon.Start(t)
	base, _ := listenHTTPS(t, d)
	ev := dialEvents(t, d, "?type=security")
	c := clientCert(t)
	cc := tlsClient(&c)
	garbage := map[string]any{"type": "client", "trust_token": "eyJub3BlIjoxfQ=="}
	for i := 0; i < 5; i++ {
		if r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", garbage, nil); r.Status != 403 {
			t.Fatalf("attempt %d: %d %s", i, r.Status, r.Raw)
		}
	}
	r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", garbage, nil)
	if r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("6th failure: %d %v %s", r.Status, r.Header, r.Raw)
	}
	nextEvent(t, ev, func(e api.Event) bool { return strings.Contains(string(e.Metadata), "authn_login_fail:token") })

	// A valid token from the blocked source waits too; from another source
	// (::1 is a separate bucket) the token works.
	tok, _ := newToken(t, d, map[string]any{"name": "ok"})
	if r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"trust_token": tok}, nil); r.Status != 429 {
		t.Fatalf("blocked source: %d", r.Status)
	}
	port := base[strings.LastIndex(base, ":")+1:]
	d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": "[::1]:" + port}})
	if r := testdaemon.DoWith(t, cc, "POST", "https://[::1]:"+port+"/1.0/certificates", map[string]any{"trust_token": tok}, nil); r.Status != 201 {
		t.Fatalf("token from another source: %d %s", r.Status, r.Raw)
	}

	// An unknown certificate on a trusted-only endpoint is a failed login.
	stranger := clientCert(t)
	testdaemon.DoWith(t, tlsClient(&stranger), "GET", "https://[::1]:"+port+"/1.0/certificates", nil, nil)
	e := nextEvent(t, ev, func(e api.Event) bool { return strings.Contains(string(e.Metadata), "authn_login_fail:tls") })
	var sec api.EventSecurity
	json.Unmarshal(e.Metadata, &sec)
	if sec.RequestPath != "/1.0/certificates" {
		t.Fatalf("security event: %+v", sec)
	}
}

func TestTrustPassword(t *testing.T) {
	d := testdaemon.Start(t)
	base, _ := listenHTTPS(t, d)
	c := clientCert(t)
	cc := tlsClient(&c)
	// Unset: the password path is refused.
	if r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"password": "whatever-it-is"}, nil); r.Status != 403 {
		t.Fatalf("password while unset: %d %s", r.Status, r.Raw)
	}
	if r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.trust_password": "short"}}); r.Status != 400 || !strings.Contains(r.Body.Error, "core.trust_password") {
		t.Fatalf("short password: %d %s", r.Status, r.Raw)
	}
	if r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.trust_password": "correct horse"}}); r.Status != 200 {
		t.Fatalf("set password: %s", r.Raw)
	}
	// Never returned: set/unset only, and not stored in clear.
	r := d.Do("GET", "/1.0", nil)
	var srv api.Server
	r.Metadata(t, &srv)
	if srv.Config["core.trust_password"] != "true" || strings.Contains(string(r.Raw), "horse") {
		t.Fatalf("GET /1.0 shows %q", srv.Config["core.trust_password"])
	}
	// Writing the redacted config back (lxc config edit) keeps it, and the
	// ETag of the redacted view is accepted.
	if r := testdaemon.DoWith(t, d.HTTPClient(), "PUT", "/1.0", map[string]any{"config": srv.Config}, map[string]string{"If-Match": r.Header.Get("ETag")}); r.Status != 200 {
		t.Fatalf("PUT back: %d %s", r.Status, r.Raw)
	}
	if r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"password": "wrong horse"}, nil); r.Status != 403 {
		t.Fatalf("wrong password: %d", r.Status)
	}
	if r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"password": "correct horse", "name": "pw"}, nil); r.Status != 201 {
		t.Fatalf("right password: %d %s", r.Status, r.Raw)
	}
	if a, _ := authOf(t, cc, base); a != "trusted" {
		t.Fatal("not trusted after the password")
	}
	db, _ := os.ReadFile(filepath.Join(d.Dir, "moat.db"))
	if strings.Contains(string(db), "correct horse") {
		t.Fatal("trust password stored in clear")
	}
}

func TestTrustPKIMode(t *testing.T) {
	d := testdaemon.Start(t)
	base, _ := listenHTTPS(t, d)
	ca := newCA(t)
	signed := ca.issue(t, 10)
	selfSigned := clientCert(t)
	// Both in the trust store.
	for _, c := range []tls.Certificate{signed, selfSigned} {
		if r := d.Do("POST", "/1.0/certificates", map[string]any{"type": "client", "certificate": certB64(c)}); r.Status != 201 {
			t.Fatalf("add: %s", r.Raw)
		}
	}
	if a, _ := authOf(t, tlsClient(&selfSigned), base); a != "trusted" {
		t.Fatal("trust store entry not trusted before PKI mode")
	}
	ca.writeCert(t, filepath.Join(d.Dir, "server.ca"))
	time.Sleep(1100 * time.Millisecond)
	if a, _ := authOf(t, tlsClient(&selfSigned), base); a != "untrusted" {
		t.Fatal("PKI mode: a certificate not signed by the CA is still trusted")
	}
	if a, m := authOf(t, tlsClient(&signed), base); a != "trusted" || m != "tls" {
		t.Fatalf("PKI mode: CA-signed stored certificate: %s %s", a, m)
	}
	// core.trust_ca_certificates trusts CA-signed certificates without an entry.
	other := ca.issue(t, 11)
	if a, _ := authOf(t, tlsClient(&other), base); a != "untrusted" {
		t.Fatal("CA-signed certificate trusted without core.trust_ca_certificates")
	}
	d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.trust_ca_certificates": "true"}})
	if a, m := authOf(t, tlsClient(&other), base); a != "trusted" || m != "pki" {
		t.Fatalf("trust_ca_certificates: %s %s", a, m)
	}
	// The CRL revokes, even trust store entries, without a restart.
	ca.writeCRL(t, filepath.Join(d.Dir, "ca.crl"), 10, 11)
	time.Sleep(1100 * time.Millisecond)
	for _, c := range []tls.Certificate{signed, other} {
		if a, _ := authOf(t, tlsClient(&c), base); a != "untrusted" {
			t.Fatalf("revoked certificate %d still trusted", c.Leaf.SerialNumber)
		}
	}
	// A broken CRL is refused and the previous one stays in force.
	writeFile(t, filepath.Join(d.Dir, "ca.crl"), []byte("garbage"))
	time.Sleep(1100 * time.Millisecond)
	if a, _ := authOf(t, tlsClient(&signed), base); a != "untrusted" {
		t.Fatal("broken CRL lifted the revocation")
	}
	if !strings.Contains(d.Logs(), "PKI reload failed") {
		t.Fatal("broken CRL not reported")
	}
	// Removing server.ca ends PKI mode.
	os.Remove(filepath.Join(d.Dir, "ca.crl"))
	os.Remove(filepath.Join(d.Dir, "server.ca"))
	time.Sleep(1100 * time.Millisecond)
	if a, _ := authOf(t, tlsClient(&selfSigned), base); a != "trusted" {
		t.Fatal("self-signed trust store entry not trusted after leaving PKI mode")
	}
}
