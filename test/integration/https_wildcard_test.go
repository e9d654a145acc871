package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/internal/testdaemon"
)

// TestPortOnlyAddressWarns: ":PORT" listens on every address, which works
// but goes against the hardening guide, so the daemon says so. Only
// 127.0.0.1 is contacted.
func TestPortOnlyAddressWarns(t *testing.T) {
	d := testdaemon.Start(t)
	port := freePort(t)
	if r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": fmt.Sprintf(":%d", port)}}); r.Status != 200 {
		t.Fatalf("port-only address: %d %s", r.Status, r.Raw)
	}
	// The listener answers on loopback, and an unknown client is untrusted.
	if auth, method := authOf(t, tlsClient(nil), fmt.Sprintf("https://127.0.0.1:%d", port)); auth != "untrusted" || method != "" {
		t.Fatalf("GET /1.0 over the wildcard listener: auth %q method %q", auth, method)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(d.Logs(), "bound to every address") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the wildcard address in the log:\n%s", d.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
