package integration

import (
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// lastLine is the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestLXCTrust drives the trust flows with the real lxc client (LXD 5.0.2).
func TestLXCTrust(t *testing.T) {
	d := testdaemon.Start(t)
	admin := newLXC(t, d)
	_, addr := listenHTTPS(t, d)

	// A token over the unix socket.
	out := admin.run("config", "trust", "add", "--name", "x")
	tok := lastLine(out)
	if !strings.Contains(out, "token") || len(tok) < 100 {
		t.Fatalf("lxc config trust add printed:\n%s", out)
	}
	if out := admin.run("config", "trust", "list-tokens"); !strings.Contains(out, "x") {
		t.Fatalf("list-tokens:\n%s", out)
	}

	// A second client redeems it with `lxc remote add NAME TOKEN`.
	remote := newLXC(t, d)
	remote.run("remote", "add", "r", tok)
	if out := remote.run("info", "r:"); !strings.Contains(out, "auth: trusted") {
		t.Fatalf("lxc info r:\n%s", out)
	}
	// The token is used up: a third client cannot reuse it.
	thief := newLXC(t, d)
	if out, err := thief.cmd("remote", "add", "r", tok).CombinedOutput(); err == nil {
		t.Fatalf("reused token accepted:\n%s", out)
	}

	// lxc remote add with a URL: the fingerprint prompt is answered, the
	// token given as the password.
	tok2 := lastLine(admin.run("config", "trust", "add", "--name", "y"))
	second := newLXC(t, d)
	c := second.cmd("remote", "add", "r2", "https://"+addr, "--password", tok2)
	c.Stdin = strings.NewReader("y\n")
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "fingerprint") {
		t.Fatalf("lxc remote add r2: %v\n%s", err, out)
	}
	if out := second.run("info", "r2:"); !strings.Contains(out, "auth: trusted") {
		t.Fatalf("lxc info r2:\n%s", out)
	}

	// The trust store through lxc: list, then remove.
	out = admin.run("config", "trust", "list", "--format=csv")
	if !strings.Contains(out, "x,") || !strings.Contains(out, "y,") {
		t.Fatalf("lxc config trust list:\n%s", out)
	}
	var fp string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) > 3 && f[1] == "x" {
			fp = f[3]
		}
	}
	if fp == "" {
		t.Fatalf("no fingerprint for x in:\n%s", out)
	}
	admin.run("config", "trust", "remove", fp)
	// lxc info against a server that no longer trusts it: the reduced view.
	if out := remote.run("info", "r:"); !strings.Contains(out, "auth: untrusted") {
		t.Fatalf("removed certificate still trusted:\n%s", out)
	}
	// Revoking a pending token cancels its operation.
	admin.run("config", "trust", "add", "--name", "z")
	if out := admin.run("config", "trust", "revoke-token", "z"); strings.Contains(out, "Error") {
		t.Fatalf("revoke-token: %s", out)
	}
	if out := admin.run("config", "trust", "list-tokens", "--format=csv"); strings.Contains(out, "z,") {
		t.Fatalf("revoked token still listed:\n%s", out)
	}
}
