package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// certValid makes a self-signed client certificate valid from nb to na.
func certValid(t *testing.T, nb, na time.Time) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "t"},
		NotBefore: nb, NotAfter: na, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func TestTrustStoreValidationAndEvents(t *testing.T) {
	d := testdaemon.Start(t)
	d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "p1"})
	now := time.Now()
	good := certValid(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	bad := []struct {
		body map[string]any
		word string
	}{
		{map[string]any{"type": "client", "certificate": certValid(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour))}, "expired"},
		{map[string]any{"type": "client", "certificate": certValid(t, now.Add(24*time.Hour), now.Add(48*time.Hour))}, "not valid yet"},
		{map[string]any{"type": "client", "certificate": good, "projects": []string{"p1"}}, "restricted"},
		{map[string]any{"type": "client", "certificate": good, "restricted": true, "projects": []string{"nope"}}, "nope"},
		{map[string]any{"type": "client", "certificate": "not base64!"}, "certificate"},
		{map[string]any{"type": "client", "certificate": good, "name": "a/b"}, "name"},
	}
	for _, b := range bad {
		r := d.Do("POST", "/1.0/certificates", b.body)
		if r.Status != 400 || !strings.Contains(r.Body.Error, b.word) {
			t.Errorf("add %v: %d %q, want 400 mentioning %q", b.body["certificate"] != good, r.Status, r.Body.Error, b.word)
		}
	}
	var fps []string
	d.Do("GET", "/1.0/certificates", nil).Metadata(t, &fps)
	if len(fps) != 0 {
		t.Fatalf("refused adds left certificates: %v", fps)
	}

	events := dialEvents(t, d, "?type=lifecycle")
	if r := d.Do("POST", "/1.0/certificates", map[string]any{"type": "client", "certificate": good, "name": "ok"}); r.Status != 201 {
		t.Fatalf("add: %d %s", r.Status, r.Raw)
	}
	d.Do("GET", "/1.0/certificates", nil).Metadata(t, &fps)
	fp := strings.TrimPrefix(fps[0], "/1.0/certificates/")
	if r := d.Do("PATCH", "/1.0/certificates/"+fp[:12], map[string]any{"name": "renamed"}); r.Status != 200 {
		t.Fatalf("patch by prefix: %d %s", r.Status, r.Raw)
	}
	if r := d.Do("DELETE", "/1.0/certificates/"+fp, nil); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	for _, action := range []string{"certificate-created", "certificate-updated", "certificate-deleted"} {
		ev := nextEvent(t, events, func(e api.Event) bool { return strings.Contains(string(e.Metadata), action) })
		var lc api.EventLifecycle
		_ = json.Unmarshal(ev.Metadata, &lc)
		if lc.Requestor == nil || lc.Requestor.Protocol != "unix" || !strings.Contains(lc.Source, fp) {
			t.Errorf("%s event = %+v", action, lc)
		}
	}
}
