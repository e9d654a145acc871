// Package integration tests a real moatd process over its unix socket, and
// the real lxc client (Debian's lxd-client) against it.
package integration

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// capture reads a response body captured from LXD 5.0.2.
func capture(t *testing.T, name string) map[string]any {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "lxd-wire", name)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read capture %s: %v", name, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode capture %s: %v", name, err)
	}
	return m
}

func keysOf(m map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func newRequest(method, path, body string) (*http.Request, error) {
	return http.NewRequest(method, "http://moat"+path, strings.NewReader(body))
}
