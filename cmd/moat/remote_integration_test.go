package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
	"github.com/moat/moat/internal/pki"
)

// peer is another user of the same daemon: its own config dir, hence its
// own client key pair and remotes.
func (c *cli) peer() *cli {
	return &cli{t: c.t, d: c.d, env: map[string]string{"MOAT_DIR": c.d.Dir, "MOAT_CONF": c.t.TempDir()}}
}

// enableHTTPS points core.https_address at a free loopback port.
func (c *cli) enableHTTPS() string {
	c.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c.ok("config", "set", "core.https_address", addr)
	return addr
}

// newToken issues a token over the admin socket with extra flags.
func (c *cli) newToken(name string, flags ...string) string {
	c.t.Helper()
	out := c.ok(append([]string{"config", "trust", "add", "--name", name}, flags...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "Client "+name+" certificate add token:" || len(lines[1]) < 100 {
		c.t.Fatalf("config trust add printed %q", out)
	}
	return lines[1]
}

// failsWith runs args, which must fail with an error containing every
// part, and returns stdout.
func (c *cli) failsWith(stdin string, args []string, parts ...string) string {
	c.t.Helper()
	out, errOut, code := c.runIn(stdin, args...)
	if code != 1 {
		c.t.Fatalf("moat %s: exit %d (stdout %q), want a failure", strings.Join(args, " "), code, out)
	}
	for _, p := range parts {
		if !strings.Contains(errOut, p) {
			c.t.Fatalf("moat %s: stderr %q lacks %q", strings.Join(args, " "), errOut, p)
		}
	}
	return out
}

type infoView struct {
	Auth       string `yaml:"auth"`
	AuthMethod string `yaml:"auth_user_method"`
	Env        struct {
		Fingerprint string `yaml:"certificate_fingerprint"`
	} `yaml:"environment"`
}

func (c *cli) info(remote string) infoView {
	c.t.Helper()
	args := []string{"info"}
	if remote != "" {
		args = append(args, remote+":")
	}
	var v infoView
	if err := yaml.Unmarshal([]byte(c.ok(args...)), &v); err != nil {
		c.t.Fatal(err)
	}
	return v
}

func (c *cli) trustList(remote string) []api.Certificate {
	c.t.Helper()
	args := []string{"config", "trust", "list", "--format", "json"}
	if remote != "" {
		args = append(args, remote+":")
	}
	var l []api.Certificate
	if err := json.Unmarshal([]byte(c.ok(args...)), &l); err != nil {
		c.t.Fatal(err)
	}
	return l
}

func (c *cli) tokens() []client.CertificateToken {
	c.t.Helper()
	var l []client.CertificateToken
	if err := json.Unmarshal([]byte(c.ok("config", "trust", "list-tokens", "--format", "json")), &l); err != nil {
		c.t.Fatal(err)
	}
	return l
}

func tokenNames(l []client.CertificateToken) string {
	var n []string
	for _, t := range l {
		n = append(n, t.Name)
	}
	return strings.Join(n, ",")
}

func certNames(l []api.Certificate) string {
	var n []string
	for _, c := range l {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}

func (c *cli) conf(name string) string { return filepath.Join(c.env["MOAT_CONF"], name) }

func pemFingerprint(t *testing.T, path string) string {
	t.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crt, err := client.ParseCertPEM(buf)
	if err != nil {
		t.Fatal(err)
	}
	return client.CertFingerprint(crt)
}

func TestRemoteAddByToken(t *testing.T) {
	admin := newCLI(t)
	admin.enableHTTPS()
	tok := admin.newToken("alice")
	if got := tokenNames(admin.tokens()); got != "alice" {
		t.Fatalf("pending tokens: %q", got)
	}

	bob := admin.peer()
	bob.ok("remote", "add", "r", tok)
	got := bob.info("r")
	if got.Auth != "trusted" || got.AuthMethod != "tls" {
		t.Fatalf("info r: %+v", got)
	}
	// The pinned certificate is the server's; the generated client key is
	// private and is what the server now trusts.
	if fp := pemFingerprint(t, bob.conf("servercerts/r.crt")); fp != admin.info("").Env.Fingerprint || fp == "" {
		t.Fatalf("pinned %s, server has %s", fp, admin.info("").Env.Fingerprint)
	}
	if fi, err := os.Stat(bob.conf("client.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client.key: %v %v", err, fi)
	}
	certs := admin.trustList("")
	if len(certs) != 1 || certs[0].Name != "alice" || certs[0].Fingerprint != pemFingerprint(t, bob.conf("client.crt")) {
		t.Fatalf("trust store: %+v", certs)
	}
	if got := tokenNames(admin.tokens()); got != "" {
		t.Fatalf("token still pending after use: %q", got)
	}

	// The token is used up: another client cannot reuse it, and is not
	// left with a half-added remote.
	carol := admin.peer()
	carol.failsWith("", []string{"remote", "add", "r", tok}, "refused the token")
	carol.fails(`remote "r" doesn't exist`, "info", "r:")
	if n := len(admin.trustList("")); n != 1 {
		t.Fatalf("trust store has %d entries after a reused token", n)
	}

	// Events work over TLS: a change made on the admin socket reaches the
	// remote client's websocket.
	c, err := bob.app("", &syncBuffer{}, &syncBuffer{}).connect("r")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := c.GetEvents(ctx, client.EventOptions{Types: []string{api.EventTypeLifecycle}, AllProjects: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	admin.ok("project", "create", "evproj")
	for ev := range l.Events() {
		lc, err := client.Lifecycle(ev)
		if err == nil && lc.Action == "project-created" && strings.HasSuffix(lc.Source, "/evproj") {
			return
		}
	}
	t.Fatalf("no project-created event over TLS: %v", l.Err())
}

func TestRemoteAddByURL(t *testing.T) {
	admin := newCLI(t)
	addr := admin.enableHTTPS()
	fp := admin.info("").Env.Fingerprint

	// Answer y; the token comes as --password (as lxc 5.0.2 sends it).
	second := admin.peer()
	out, errOut, code := second.runIn("y\n", "remote", "add", "r2", "https://"+addr, "--password", admin.newToken("y"))
	if code != 0 || !strings.Contains(out, "Certificate fingerprint: "+fp+"\n") {
		t.Fatalf("remote add r2: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := second.info("r2"); got.Auth != "trusted" {
		t.Fatalf("info r2: %+v", got)
	}

	// The fingerprint typed out, --token, an address without scheme.
	third := admin.peer()
	if _, errOut, code := third.runIn(fp+"\n", "remote", "add", "r3", addr, "--token", admin.newToken("z")); code != 0 {
		t.Fatalf("remote add r3: %s", errOut)
	}
	if got := third.info("r3"); got.Auth != "trusted" {
		t.Fatalf("info r3: %+v", got)
	}

	// The token typed at the prompt.
	fifth := admin.peer()
	if _, errOut, code := fifth.runIn("y\n"+admin.newToken("v")+"\n", "remote", "add", "r5", "https://"+addr); code != 0 {
		t.Fatalf("remote add r5 with the token on stdin: %s", errOut)
	}

	// A wrong fingerprint typed: refused, nothing sent, nothing stored.
	w := admin.newToken("w")
	fourth := admin.peer()
	fourth.failsWith(strings.Repeat("ab", 32)+"\n", []string{"remote", "add", "r4", "https://" + addr, "--token", w},
		"not "+strings.Repeat("ab", 32), "intercepting")
	fourth.failsWith("n\n", []string{"remote", "add", "r4", "https://" + addr, "--token", w}, "not accepted")
	fourth.failsWith("", []string{"remote", "add", "r4", "https://" + addr, "--token", w}, "no answer")
	fourth.fails(`remote "r4" doesn't exist`, "info", "r4:")
	if _, err := os.Stat(fourth.conf("servercerts/r4.crt")); !os.IsNotExist(err) {
		t.Fatalf("refused remote left a pinned certificate: %v", err)
	}
	if got := tokenNames(admin.tokens()); got != "w" {
		t.Fatalf("pending tokens after refusals: %q (w must still be usable)", got)
	}
	if got := certNames(admin.trustList("")); !sameNames(got, "v,y,z") {
		t.Fatalf("trust store: %q", got)
	}

	// No token at all: the server does not trust us, nothing is stored.
	sixth := admin.peer()
	sixth.failsWith("y\n", []string{"remote", "add", "r6", "https://" + addr}, "does not trust this client")
	sixth.fails(`remote "r6" doesn't exist`, "info", "r6:")

	// A token of another server is refused before its secret is sent.
	other := newCLI(t)
	other.enableHTTPS()
	foreign := other.newToken("f")
	seventh := admin.peer()
	seventh.failsWith("y\n", []string{"remote", "add", "r7", "https://" + addr, "--token", foreign}, "issued by the server with certificate")
	if got := tokenNames(other.tokens()); got != "f" {
		t.Fatalf("foreign token consumed: %q", got)
	}
}

func sameNames(a, b string) bool {
	as, bs := strings.Split(a, ","), strings.Split(b, ",")
	if len(as) != len(bs) {
		return false
	}
	seen := map[string]int{}
	for _, x := range as {
		seen[x]++
	}
	for _, x := range bs {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestRemoteChangedServerCertificateRefused(t *testing.T) {
	admin := newCLI(t)
	admin.enableHTTPS()
	bob := admin.peer()
	bob.ok("remote", "add", "r", admin.newToken("bob"))
	pinned := pemFingerprint(t, bob.conf("servercerts/r.crt"))

	// New server key pair: delete it and restart.
	admin.d.Stop()
	for _, f := range []string{"server.crt", "server.key"} {
		if err := os.Remove(filepath.Join(admin.d.Dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	admin.d.Restart()
	now := admin.info("").Env.Fingerprint
	if now == pinned || now == "" {
		t.Fatalf("server certificate not regenerated: %s", now)
	}

	bob.failsWith("", []string{"info", "r:"}, "presented certificate "+now, "not the pinned certificate "+pinned, "man-in-the-middle")
	bob.failsWith("", []string{"config", "trust", "add", "r:", "--name", "evil"}, "man-in-the-middle")
	// Nothing reached the server: no token was created, the trust store is
	// as it was, and the pin is unchanged.
	if got := tokenNames(admin.tokens()); got != "" {
		t.Fatalf("tokens: %q", got)
	}
	if got := certNames(admin.trustList("")); got != "bob" {
		t.Fatalf("trust store: %q", got)
	}
	if got := pemFingerprint(t, bob.conf("servercerts/r.crt")); got != pinned {
		t.Fatalf("pin changed to %s", got)
	}
	// A token naming the new certificate is refused by the old remote
	// name: the user has to remove it and re-add it knowingly.
	bob.failsWith("", []string{"remote", "add", "r", admin.newToken("bob2")}, `remote "r" already exists`)
}

func TestRemoteListRenameSwitchRemove(t *testing.T) {
	admin := newCLI(t)
	admin.enableHTTPS()
	bob := admin.peer()
	bob.ok("remote", "add", "r", admin.newToken("bob"))

	var remotes []struct {
		Name    string `json:"name"`
		Addr    string `json:"addr"`
		Default bool   `json:"default"`
	}
	if err := json.Unmarshal([]byte(bob.ok("remote", "list", "--format", "json")), &remotes); err != nil {
		t.Fatal(err)
	}
	if len(remotes) != 2 || remotes[0].Name != "local" || !remotes[0].Default || remotes[1].Name != "r" || !strings.HasPrefix(remotes[1].Addr, "https://127.0.0.1:") {
		t.Fatalf("remote list: %+v", remotes)
	}
	if out := bob.ok("remote", "list"); !strings.Contains(out, "| local (current) |") {
		t.Fatalf("remote list table:\n%s", out)
	}
	if got := bob.ok("remote", "get-default"); got != "local\n" {
		t.Fatalf("get-default: %q", got)
	}

	// Switch: unprefixed commands go to r, over TLS.
	bob.ok("remote", "switch", "r")
	if got := bob.ok("remote", "get-default"); got != "r\n" {
		t.Fatalf("get-default after switch: %q", got)
	}
	if got := bob.info(""); got.AuthMethod != "tls" {
		t.Fatalf("default remote info: %+v", got)
	}
	// Prefixes on other commands reach the remote.
	bob.ok("project", "create", "r:fromremote")
	if out := admin.ok("project", "list", "--format", "csv"); !strings.Contains(out, "fromremote,") {
		t.Fatalf("project created through r: missing:\n%s", out)
	}

	// Rename carries the pin and the default.
	bob.ok("remote", "rename", "r", "s")
	if got := bob.ok("remote", "get-default"); got != "s\n" {
		t.Fatalf("get-default after rename: %q", got)
	}
	if _, err := os.Stat(bob.conf("servercerts/s.crt")); err != nil {
		t.Fatalf("pin not renamed: %v", err)
	}
	if _, err := os.Stat(bob.conf("servercerts/r.crt")); !os.IsNotExist(err) {
		t.Fatalf("old pin left: %v", err)
	}
	if got := bob.info("s"); got.Auth != "trusted" {
		t.Fatalf("info s: %+v", got)
	}
	bob.fails(`remote "r" doesn't exist`, "info", "r:")
	bob.fails(`remote "s" already exists`, "remote", "add", "s", "https://127.0.0.1:1")
	bob.fails(`remote "local" already exists`, "remote", "add", "local", "https://127.0.0.1:1")
	bob.fails(`remote "local" is the local daemon and cannot be changed`, "remote", "rename", "local", "x")

	// The default remote cannot be removed; after switching back it can.
	bob.fails(`remote "s" is the default remote: switch to another one first`, "remote", "remove", "s")
	bob.ok("remote", "switch", "local")
	bob.ok("remote", "remove", "s")
	bob.fails(`remote "s" doesn't exist`, "info", "s:")
	if _, err := os.Stat(bob.conf("servercerts/s.crt")); !os.IsNotExist(err) {
		t.Fatalf("pin left after remove: %v", err)
	}
	if out := bob.ok("remote", "list", "--format", "csv"); strings.Contains("\n"+out, "\ns,") || !strings.HasPrefix(out, "local (current),") {
		t.Fatalf("remote list after remove:\n%s", out)
	}
	bob.fails(`remote "nope" doesn't exist`, "remote", "switch", "nope")
}

// writeCertFile writes a fresh self-signed client certificate, returning
// its path and fingerprint.
func writeCertFile(t *testing.T) (string, string) {
	t.Helper()
	certPEM, _, err := pki.GenerateCert(false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other.crt")
	if err := os.WriteFile(path, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	crt, _ := client.ParseCertPEM(certPEM)
	return path, client.CertFingerprint(crt)
}

func TestTrustRestrictedAndManagement(t *testing.T) {
	admin := newCLI(t)
	admin.enableHTTPS()
	admin.ok("project", "create", "p1")
	admin.ok("project", "create", "p2")

	tok := admin.newToken("rr", "--restricted", "--projects", "p1")
	toks := admin.tokens()
	if len(toks) != 1 || toks[0].Name != "rr" || !toks[0].Restricted || strings.Join(toks[0].Projects, ",") != "p1" || toks[0].Token != tok {
		t.Fatalf("list-tokens: %+v", toks)
	}
	if out := admin.ok("config", "trust", "list-tokens"); !strings.Contains(out, "| rr ") || !strings.Contains(out, "| YES ") {
		t.Fatalf("list-tokens table:\n%s", out)
	}
	admin.fails("--projects needs --restricted", "config", "trust", "add", "--name", "x", "--projects", "p1")
	admin.fails("missing client name: give --name", "config", "trust", "add")

	bob := admin.peer()
	bob.ok("remote", "add", "r", tok)

	// A certificate added from a file, restricted too.
	file, otherFP := writeCertFile(t)
	admin.ok("config", "trust", "add-certificate", file, "--name", "other", "--restricted", "--projects", "p1,p2")
	out := admin.ok("config", "trust", "list", "--format", "csv")
	bobFP := pemFingerprint(t, bob.conf("client.crt"))
	if !strings.Contains(out, "rr,client,"+bobFP+",YES,p1,") || !strings.Contains(out, "other,client,"+otherFP+",YES,\"p1,p2\",") {
		t.Fatalf("trust list:\n%s", out)
	}

	// The restricted client sees only itself, cannot issue tokens and does
	// not see the pending ones.
	admin.newToken("pending")
	if got := bob.trustList("r"); len(got) != 1 || got[0].Fingerprint != bobFP {
		t.Fatalf("restricted client sees %+v", got)
	}
	bob.failsWith("", []string{"config", "trust", "show", "r:" + otherFP}, "")
	if out, _, code := bob.run("config", "trust", "show", "r:"+otherFP); code == 0 || strings.Contains(out, "other") {
		t.Fatalf("restricted client read another certificate: %q", out)
	}
	bob.failsWith("", []string{"config", "trust", "add", "r:", "--name", "z"}, "")
	if out, _, code := bob.run("config", "trust", "list-tokens", "r:", "--format", "csv"); code == 0 && strings.Contains(out, "pending") {
		t.Fatalf("restricted client sees pending tokens:\n%s", out)
	}
	if got := tokenNames(admin.tokens()); got != "pending" {
		t.Fatalf("tokens: %q", got)
	}
	bob.failsWith("", []string{"config", "trust", "remove", "r:" + otherFP}, "")

	// show (by prefix), edit (piped YAML), remove.
	var shown api.Certificate
	if err := yaml.Unmarshal([]byte(admin.ok("config", "trust", "show", otherFP[:10])), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Name != "other" || shown.Fingerprint != otherFP || !shown.Restricted {
		t.Fatalf("show: %+v", shown)
	}
	edited := "name: renamed\ntype: client\nrestricted: true\nprojects: [p2]\n"
	if _, errOut, code := admin.runIn(edited, "config", "trust", "edit", otherFP); code != 0 {
		t.Fatalf("edit: %s", errOut)
	}
	if err := yaml.Unmarshal([]byte(admin.ok("config", "trust", "show", "local:"+otherFP)), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Name != "renamed" || strings.Join(shown.Projects, ",") != "p2" {
		t.Fatalf("after edit: %+v", shown)
	}
	admin.ok("config", "trust", "remove", otherFP)
	if got := certNames(admin.trustList("")); got != "rr" {
		t.Fatalf("after remove: %q", got)
	}

	// revoke-token by name and by id; a revoked token cannot be redeemed.
	revoked := admin.newToken("tmp")
	admin.ok("config", "trust", "revoke-token", "tmp")
	var id string
	for _, tk := range admin.tokens() {
		if tk.Name == "pending" {
			id = tk.ID
		}
	}
	admin.ok("config", "trust", "revoke-token", id)
	if got := tokenNames(admin.tokens()); got != "" {
		t.Fatalf("tokens after revoke: %q", got)
	}
	admin.failsWith("", []string{"config", "trust", "revoke-token", "tmp"}, "no pending trust token matches")
	carol := admin.peer()
	carol.failsWith("", []string{"remote", "add", "r", revoked}, "refused the token")
	if got := certNames(admin.trustList("")); got != "rr" {
		t.Fatalf("revoked token redeemed: %q", got)
	}
}

// testCA is a throw-away CA for the PKI mode test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

// issue writes a CA-signed key pair (server: for 127.0.0.1 and ::1).
func (ca *testCA) issue(t *testing.T, serial int64, server bool, certPath, keyPath string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprintf("leaf-%d", serial)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writeOrFail(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	writeOrFail(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}

func (ca *testCA) write(t *testing.T, path string) {
	writeOrFail(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644)
}

func writeOrFail(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func TestRemotePKIMode(t *testing.T) {
	admin := newCLI(t)
	ca := newTestCA(t)
	// PKI mode on the server: server.ca, and a server certificate the CA
	// signed.
	admin.d.Stop()
	ca.write(t, filepath.Join(admin.d.Dir, "server.ca"))
	ca.issue(t, 2, true, filepath.Join(admin.d.Dir, "server.crt"), filepath.Join(admin.d.Dir, "server.key"))
	admin.d.Restart()
	addr := admin.enableHTTPS()
	admin.ok("config", "set", "core.trust_ca_certificates", "true")

	// A client with client.ca and a CA-signed key pair: no fingerprint
	// prompt (the CA vouches for the server), trusted through the CA.
	bob := admin.peer()
	ca.write(t, bob.conf("client.ca"))
	ca.issue(t, 3, false, bob.conf("client.crt"), bob.conf("client.key"))
	out, errOut, code := bob.runIn("", "remote", "add", "pki", "https://"+addr)
	if code != 0 || strings.Contains(out, "fingerprint") {
		t.Fatalf("remote add pki: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := bob.info("pki"); got.Auth != "trusted" || got.AuthMethod != "pki" {
		t.Fatalf("info pki: %+v", got)
	}

	// A client whose client.ca is another CA refuses the server.
	carol := admin.peer()
	newTestCA(t).write(t, carol.conf("client.ca"))
	carol.failsWith("", []string{"remote", "add", "pki", "https://" + addr}, "client.ca", "does not validate")
	carol.fails(`remote "pki" doesn't exist`, "info", "pki:")

	// Right CA, but a self-generated client certificate: the server does
	// not trust it, even with a token.
	dave := admin.peer()
	ca.write(t, dave.conf("client.ca"))
	dave.failsWith("", []string{"remote", "add", "pki", "https://" + addr, "--token", admin.newToken("dave")}, "not trusted by the CA")
	dave.fails(`remote "pki" doesn't exist`, "info", "pki:")
	if got := certNames(admin.trustList("")); got != "" {
		t.Fatalf("trust store: %q", got)
	}
}
