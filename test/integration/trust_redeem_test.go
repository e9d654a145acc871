package integration

import (
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// TestTrustTokenFailedAddConsumesToken: when the certificate a valid token
// is redeemed for cannot be stored, the token is used up all the same
// (consumption and insertion share a transaction, so the failed insertion
// must not roll the consumption back).
func TestTrustTokenFailedAddConsumesToken(t *testing.T) {
	d := testdaemon.Start(t)
	base, _ := listenHTTPS(t, d)
	alice := clientCert(t)
	if r := d.Do("POST", "/1.0/certificates", map[string]any{"type": "client", "name": "alice", "certificate": certB64(alice)}); r.Status != 201 {
		t.Fatalf("add alice: %d %s", r.Status, r.Raw)
	}
	tok, op := newToken(t, d, map[string]any{"name": "dup"})

	// An untrusted client redeems the token for a certificate that is
	// already trusted: the insertion conflicts.
	carol := clientCert(t)
	cc := tlsClient(&carol)
	r := testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"type": "client", "trust_token": tok, "certificate": certB64(alice)}, nil)
	if r.Status != 409 || !strings.Contains(r.Body.Error, "already in trust store") {
		t.Fatalf("redeem for a stored certificate: %d %s", r.Status, r.Raw)
	}
	// The token is gone: not pending, not redeemable for carol's own
	// certificate, and nothing named "dup" was stored.
	if r := d.Do("GET", "/1.0/operations/"+op.ID, nil); r.Status == 200 && strings.Contains(string(r.Raw), `"status":"Running"`) {
		t.Fatalf("token operation still running: %s", r.Raw)
	}
	r = testdaemon.DoWith(t, cc, "POST", base+"/1.0/certificates", map[string]any{"type": "client", "trust_token": tok}, nil)
	if r.Status != 403 || r.Body.Error != "No matching certificate add operation found" {
		t.Fatalf("second redeem: %d %s", r.Status, r.Raw)
	}
	if a, _ := authOf(t, cc, base); a != "untrusted" {
		t.Fatal("carol trusted")
	}
	if r := d.Do("GET", "/1.0/certificates?recursion=1", nil); strings.Contains(string(r.Raw), `"dup"`) || !strings.Contains(string(r.Raw), `"alice"`) {
		t.Fatalf("trust store: %s", r.Raw)
	}
	// A daemon restart does not bring the token back (the consumption was
	// committed).
	d.Stop()
	d.Restart()
	base, _ = listenHTTPS(t, d)
	r = testdaemon.DoWith(t, tlsClient(&carol), "POST", base+"/1.0/certificates", map[string]any{"type": "client", "trust_token": tok}, nil)
	if r.Status != 403 {
		t.Fatalf("redeem after restart: %d %s", r.Status, r.Raw)
	}
}
