package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// TestFilesPushKeepsExistingOwnerAndMode: as with LXD 5.0.2, the
// X-LXD-uid/gid/mode headers apply to what a push creates; an existing
// file gets the new content and keeps its owner and mode, whether the
// headers are missing, -1 or set.
func TestFilesPushKeepsExistingOwnerAndMode(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "f1", nil)
	hc := d.HTTPClient()
	push := func(path, body string, hdr map[string]string) {
		t.Helper()
		if r := testdaemon.DoWith(t, hc, "POST", "/1.0/instances/f1/files?path="+path, body, hdr); r.Status != 200 {
			t.Fatalf("push %s %v: %d %s", path, hdr, r.Status, r.Raw)
		}
	}
	stat := func(path string) string {
		t.Helper()
		_, out := execOut(t, d, "f1", "sh", "-c", "stat -c '%u %g %a %F' "+path+"; cat "+path)
		return out
	}
	push("/root/f", "one", map[string]string{"X-LXD-uid": "5", "X-LXD-gid": "6", "X-LXD-mode": "0600"})
	if got := stat("/root/f"); got != "5 6 600 regular file\none" {
		t.Fatalf("created: %q", got)
	}
	for i, hdr := range []map[string]string{
		nil,
		{"X-LXD-uid": "-1", "X-LXD-gid": "-1", "X-LXD-mode": "-1"},
		{"X-LXD-uid": "7", "X-LXD-gid": "8", "X-LXD-mode": "0644"},
		{"X-LXD-write": "append"},
	} {
		push("/root/f", "two", hdr)
		want := "5 6 600 regular file\ntwo"
		if i == 3 {
			want += "two"
		}
		if got := stat("/root/f"); got != want {
			t.Errorf("overwritten with %v: %q, want %q", hdr, got, want)
		}
	}
	// A new file without headers: root's, 0644.
	push("/root/g", "x", nil)
	if got := stat("/root/g"); got != "0 0 644 regular file\nx" {
		t.Errorf("created without headers: %q", got)
	}
	// Bad headers: 400 naming the header, nothing changed.
	for name, v := range map[string]string{"X-LXD-uid": "x", "X-LXD-gid": "-2", "X-LXD-mode": "999", "X-LXD-type": "fifo"} {
		r := testdaemon.DoWith(t, hc, "POST", "/1.0/instances/f1/files?path=/root/f", "bad", map[string]string{name: v})
		if r.Status != 400 || !strings.Contains(r.Body.Error, name) {
			t.Errorf("%s: %s: %d %q", name, v, r.Status, r.Body.Error)
		}
	}
	if got := stat("/root/f"); got != "5 6 600 regular file\ntwotwo" {
		t.Errorf("after the refused pushes: %q", got)
	}
}

// TestFilesPushDirectoryAndSymlink: X-LXD-type=directory creates a
// directory (0750 by default, as LXD), leaves an existing one alone and
// refuses a file in the way; X-LXD-type=symlink creates a link that later
// reads and writes never follow out of the rootfs.
func TestFilesPushDirectoryAndSymlink(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "f1", nil)
	hc := d.HTTPClient()
	post := func(path, body string, hdr map[string]string) int {
		t.Helper()
		return testdaemon.DoWith(t, hc, "POST", "/1.0/instances/f1/files?path="+path, body, hdr).Status
	}
	dir := map[string]string{"X-LXD-type": "directory"}
	if s := post("/root/d", "", map[string]string{"X-LXD-type": "directory", "X-LXD-uid": "5", "X-LXD-gid": "6", "X-LXD-mode": "0711"}); s != 200 {
		t.Fatalf("mkdir: %d", s)
	}
	body, hdr := getFile(t, d, "f1", "/root/d")
	var list []string
	var env struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if json.Unmarshal([]byte(body), &env) != nil || json.Unmarshal(env.Metadata, &list) != nil || len(list) != 0 ||
		hdr.Get("X-LXD-type") != "directory" || hdr.Get("X-LXD-uid") != "5" || hdr.Get("X-LXD-gid") != "6" || hdr.Get("X-LXD-mode") != "0711" {
		t.Fatalf("GET of the new directory: %s %v", body, hdr)
	}
	// Again, with other headers: unchanged, like LXD.
	if s := post("/root/d", "", map[string]string{"X-LXD-type": "directory", "X-LXD-uid": "0", "X-LXD-mode": "0700"}); s != 200 {
		t.Fatalf("mkdir of an existing directory: %d", s)
	}
	if _, hdr := getFile(t, d, "f1", "/root/d"); hdr.Get("X-LXD-uid") != "5" || hdr.Get("X-LXD-mode") != "0711" {
		t.Errorf("existing directory changed: %v", hdr)
	}
	if s := post("/root/d2", "", dir); s != 200 {
		t.Fatalf("mkdir without headers: %d", s)
	}
	if _, out := execOut(t, d, "f1", "stat", "-c", "%u %g %a %F", "/root/d2"); out != "0 0 750 directory\n" {
		t.Errorf("directory without headers: %q", out)
	}
	push := testdaemon.DoWith(t, hc, "POST", "/1.0/instances/f1/files?path=/root/d2/inside", "in", nil)
	if push.Status != 200 {
		t.Fatalf("push into the new directory: %d", push.Status)
	}
	if s := post("/root/d2/inside", "", dir); s != 409 {
		t.Errorf("mkdir over a file: %d, want 409", s)
	}

	// Symlinks: relative and absolute targets, both kept as given.
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host data"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := map[string]string{"X-LXD-type": "symlink"}
	for path, target := range map[string]string{"/root/rel": "d2/inside", "/root/abs": secret, "/root/up": "../../../../../../.."} {
		if s := post(path, target, link); s != 200 {
			t.Fatalf("symlink %s -> %s: %d", path, target, s)
		}
		body, hdr := getFile(t, d, "f1", path)
		if body != target || hdr.Get("X-LXD-type") != "symlink" {
			t.Errorf("GET %s: %q %v", path, body, hdr)
		}
	}
	if _, out := execOut(t, d, "f1", "cat", "/root/rel"); out != "in" {
		t.Errorf("the relative link inside the container: %q", out)
	}
	// The same link again is a no-op; another target over it a 409.
	if s := post("/root/rel", "d2/inside", link); s != 200 {
		t.Errorf("same symlink again: %d", s)
	}
	if s := post("/root/rel", "elsewhere", link); s != 409 {
		t.Errorf("symlink over another: %d, want 409", s)
	}
	// The escaping links are never followed: a write through the
	// absolute one is refused, one through the directory link lands in
	// the rootfs, and the host file is untouched either way.
	if s := post("/root/abs", "pwned", nil); s != 400 {
		t.Errorf("write through a symlink: %d, want 400", s)
	}
	if s := post("/root/up"+secret, "pwned", nil); s == 200 {
		t.Errorf("write under the directory link to a path that is not in the rootfs: %d", s)
	}
	if s := post("/root/up/root/via-up", "through", nil); s != 200 {
		t.Errorf("write through the directory link: %d", s)
	}
	if _, out := execOut(t, d, "f1", "cat", "/root/via-up"); out != "through" {
		t.Errorf("file written through ../..: %q", out)
	}
	if b, _ := os.ReadFile(secret); string(b) != "host data" {
		t.Fatalf("host file changed: %q", b)
	}
	res, err := hc.Get("http://moat/1.0/instances/f1/files?path=/root/up" + secret)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("GET of a host path through the directory link: %d, want 404", res.StatusCode)
	}
}
