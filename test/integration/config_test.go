package integration

import (
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

func serverConfig(t *testing.T, d *testdaemon.Daemon) (map[string]string, string) {
	t.Helper()
	r := d.Do("GET", "/1.0", nil)
	var s api.Server
	r.Metadata(t, &s)
	return s.Config, r.Header.Get("ETag")
}

func TestServerConfig(t *testing.T) {
	d := testdaemon.Start(t)

	r := d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"user.x": "y", "core.remote_token_expiry": "1H 30M"}})
	if r.Status != 200 {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body.Error)
	}
	cfg, etag := serverConfig(t, d)
	if cfg["user.x"] != "y" || cfg["core.remote_token_expiry"] != "1H 30M" {
		t.Fatalf("config after PATCH = %v", cfg)
	}

	bad := []struct {
		body   any
		status int
		words  []string
	}{
		{map[string]any{"config": map[string]string{"core.nope": "1"}}, 400, []string{"core.nope", "Unknown"}},
		{map[string]any{"config": map[string]string{"core.remote_token_expiry": "5 minutes"}}, 400, []string{"core.remote_token_expiry"}},
		{map[string]any{"config": map[string]string{"core.https_address": "127.0.0.1:99999"}}, 400, []string{"core.https_address", "port"}},
		{map[string]any{"config": map[string]any{"user.x": 5}}, 400, []string{"config", "number", "string"}},
		{map[string]any{"config": "string"}, 400, []string{"config"}},
		{`{"config": {"user.x": "y"`, 400, nil},
		{"", 400, []string{"empty"}},
		{`{"config":{"user.big":"` + strings.Repeat("a", 2<<20) + `"}}`, 413, []string{"larger"}},
	}
	for _, b := range bad {
		r := d.Do("PATCH", "/1.0", b.body)
		if r.Status != b.status {
			t.Errorf("PATCH %.80v: status %d (%s), want %d", b.body, r.Status, r.Body.Error, b.status)
		}
		for _, w := range b.words {
			if !strings.Contains(r.Body.Error, w) {
				t.Errorf("PATCH %.80v: error %q does not mention %q", b.body, r.Body.Error, w)
			}
		}
	}
	after, etag2 := serverConfig(t, d)
	if len(after) != len(cfg) || after["user.x"] != "y" || etag2 != etag {
		t.Fatalf("rejected requests changed the config: %v -> %v", cfg, after)
	}

	// If-Match: a stale ETag is refused with 412, the current one accepted.
	res := testdaemon.DoWith(t, d.HTTPClient(), "PUT", "/1.0", map[string]any{"config": map[string]string{"user.z": "1"}},
		map[string]string{"If-Match": `"0000"`})
	if res.Status != 412 || !strings.Contains(res.Body.Error, "ETag doesn't match") {
		t.Fatalf("stale If-Match: %d %q", res.Status, res.Body.Error)
	}
	res = testdaemon.DoWith(t, d.HTTPClient(), "PUT", "/1.0", map[string]any{"config": map[string]string{"user.z": "1"}},
		map[string]string{"If-Match": etag})
	if res.Status != 200 {
		t.Fatalf("current If-Match refused: %d %q", res.Status, res.Body.Error)
	}
	cfg, _ = serverConfig(t, d)
	if len(cfg) != 1 || cfg["user.z"] != "1" {
		t.Fatalf("PUT must replace the config: %v", cfg)
	}

	// The config survives a restart.
	d.Stop()
	d.Restart()
	cfg, _ = serverConfig(t, d)
	if cfg["user.z"] != "1" {
		t.Fatalf("config lost across restart: %v", cfg)
	}
}
