package integration

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// TestWireShapes compares Moat's envelopes with LXD 5.0.2's captured ones.
func TestWireShapes(t *testing.T) {
	d := testdaemon.Start(t)

	t.Run("root is byte-identical", func(t *testing.T) {
		r := d.Do("GET", "/", nil)
		want := capture(t, "root.json")
		var got map[string]any
		if err := json.Unmarshal(r.Raw, &got); err != nil {
			t.Fatal(err)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if string(wb) != string(gb) {
			t.Fatalf("GET / = %s, LXD said %s", gb, wb)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type = %q", ct)
		}
	})

	t.Run("GET /1.0 has LXD's keys", func(t *testing.T) {
		r := d.Do("GET", "/1.0", nil)
		if r.Status != 200 || r.Header.Get("ETag") == "" {
			t.Fatalf("status %d etag %q", r.Status, r.Header.Get("ETag"))
		}
		var got map[string]any
		r.Metadata(t, &got)
		want := capture(t, "get-1.0.json")["metadata"].(map[string]any)
		for k := range want {
			if _, ok := got[k]; !ok {
				t.Errorf("GET /1.0 lacks key %q", k)
			}
		}
		env := got["environment"].(map[string]any)
		for k := range want["environment"].(map[string]any) {
			if _, ok := env[k]; !ok && k != "kernel_features" {
				t.Errorf("environment lacks key %q", k)
			}
		}
		if got["auth"] != "trusted" || got["auth_user_method"] != "unix" {
			t.Errorf("auth = %v via %v", got["auth"], got["auth_user_method"])
		}
	})

	t.Run("error envelopes", func(t *testing.T) {
		cases := []struct {
			capture, method, path, body string
			status                      int
		}{
			{"err-unknown-endpoint.json", "GET", "/1.0/nope", "", 404},
			{"err-method.json", "DELETE", "/1.0", "", 501},
			{"err-bad-json.json", "PUT", "/1.0", "{bad", 400},
		}
		for _, c := range cases {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := d.Do(c.method, c.path, body)
			want := capture(t, c.capture)
			if r.Status != c.status || r.Body.ErrorCode != c.status {
				t.Errorf("%s %s: status %d code %d, want %d", c.method, c.path, r.Status, r.Body.ErrorCode, c.status)
			}
			var got map[string]any
			_ = json.Unmarshal(r.Raw, &got)
			if len(keysOf(got)) != len(keysOf(want)) {
				t.Errorf("%s: keys %v, LXD has %v", c.capture, keysOf(got), keysOf(want))
			}
			if c.status != 400 && got["error"] != want["error"] {
				t.Errorf("%s: error %q, LXD says %q", c.capture, got["error"], want["error"])
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: no nosniff header", c.capture)
			}
		}
	})

	t.Run("empty operations list", func(t *testing.T) {
		r := d.Do("GET", "/1.0/operations", nil)
		if string(r.Body.Metadata) != "{}" {
			t.Fatalf("empty operations = %s, LXD says {}", r.Body.Metadata)
		}
	})

	t.Run("unknown method", func(t *testing.T) {
		r := d.Do("BREW", "/1.0", nil)
		if r.Status != http.StatusNotFound || r.Body.Error != `Method "BREW" not found` {
			t.Fatalf("BREW /1.0 = %d %q", r.Status, r.Body.Error)
		}
	})
}
