package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// TestFilesRefuseSpecialFiles: the container decides what sits at a path.
// A FIFO must not hang the daemon's request, and a device node (which a
// privileged container can make) must not be opened by the daemon, which
// no device cgroup confines: both are refused for reading and writing,
// while regular files still work.
func TestFilesRefuseSpecialFiles(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "sp1", nil)
	launch(t, d, "sp2", map[string]string{"security.privileged": "true"})
	if code, out := execOut(t, d, "sp1", "mkfifo", "/root/fifo"); code != 0 {
		t.Fatalf("mkfifo: %d %s", code, out)
	}
	// c 1:7 is /dev/full: every write to it fails with ENOSPC, so a
	// write that reached the device would be told apart from a refusal.
	if code, out := execOut(t, d, "sp2", "mknod", "/root/full", "c", "1", "7"); code != 0 {
		t.Fatalf("mknod in a privileged container: %d %s", code, out)
	}
	// A bounded client: before the fix, the FIFO write blocked forever.
	c := d.HTTPClient()
	c.Timeout = 30 * time.Second
	for _, tc := range []struct{ inst, path string }{{"sp1", "/root/fifo"}, {"sp2", "/root/full"}} {
		url := "/1.0/instances/" + tc.inst + "/files?path=" + tc.path
		for _, hdr := range []map[string]string{nil, {"X-LXD-write": "append"}} {
			r := testdaemon.DoWith(t, c, "POST", url, "data", hdr)
			if r.Status != http.StatusBadRequest || !strings.Contains(r.Body.Error, tc.path) {
				t.Errorf("POST %s %v: %d %q, want 400 naming the path", tc.path, hdr, r.Status, r.Body.Error)
			}
		}
		res, err := c.Get("http://moat" + url)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", tc.path, res.StatusCode)
		}
	}
	// The node and the FIFO are still what the container made.
	if _, out := execOut(t, d, "sp2", "stat", "-c", "%F %t:%T", "/root/full"); out != "character special file 1:7\n" {
		t.Errorf("device node after the refusals: %q", out)
	}
	if _, out := execOut(t, d, "sp1", "stat", "-c", "%F", "/root/fifo"); out != "fifo\n" {
		t.Errorf("fifo after the refusals: %q", out)
	}
	// Regular files: create, overwrite, append, read back exactly.
	url := "/1.0/instances/sp1/files?path=/root/reg"
	for _, step := range []struct {
		body string
		hdr  map[string]string
	}{{"first", nil}, {"ab", nil}, {"cd", map[string]string{"X-LXD-write": "append"}}} {
		if r := testdaemon.DoWith(t, c, "POST", url, step.body, step.hdr); r.Status != 200 {
			t.Fatalf("push %q: %d %s", step.body, r.Status, r.Raw)
		}
	}
	if body, _ := getFile(t, d, "sp1", "/root/reg"); body != "abcd" {
		t.Fatalf("overwrite then append gave %q, want abcd", body)
	}
}

// TestFileLifecycleEvents: pushing, pulling and deleting a file are
// lifecycle events with the path and the requestor, like every other
// instance action.
func TestFileLifecycleEvents(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "fe1", nil)
	ev := dialEvents(t, d, "?type=lifecycle")
	url := "/1.0/instances/fe1/files?path=/root/ev"
	expect := func(action string) {
		t.Helper()
		e := nextEvent(t, ev, func(e api.Event) bool {
			var lc api.EventLifecycle
			return json.Unmarshal(e.Metadata, &lc) == nil && strings.HasPrefix(lc.Action, "instance-file-")
		})
		var lc api.EventLifecycle
		_ = json.Unmarshal(e.Metadata, &lc)
		if lc.Action != action || lc.Source != "/1.0/instances/fe1" || lc.Context["path"] != "/root/ev" ||
			lc.Requestor == nil || lc.Requestor.Username != "root" {
			t.Errorf("want %s: got %+v", action, lc)
		}
	}
	if r := testdaemon.DoWith(t, d.HTTPClient(), "POST", url, "x", nil); r.Status != 200 {
		t.Fatalf("push: %d", r.Status)
	}
	expect("instance-file-pushed")
	getFile(t, d, "fe1", "/root/ev")
	expect("instance-file-retrieved")
	if r := d.Do("DELETE", url, nil); r.Status != 200 {
		t.Fatalf("delete: %d", r.Status)
	}
	expect("instance-file-deleted")
	// A refused request is not an event: the next file event is the
	// push after it.
	if r := d.Do("DELETE", url, nil); r.Status != 404 {
		t.Fatalf("delete of a missing file: %d", r.Status)
	}
	if r := testdaemon.DoWith(t, d.HTTPClient(), "POST", url, "y", nil); r.Status != 200 {
		t.Fatalf("push: %d", r.Status)
	}
	expect("instance-file-pushed")
}
