package integration

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// TestDiskSourceSwappedAfterCheck: in a project whose disks are confined
// to a host directory, a source accepted when the config was stored and
// then turned into a symlink to the rest of the host (as the owner of
// that directory can do at any time) is not mounted at the next start,
// and a hot-plug of it is refused. The legitimate path keeps working, and
// an admin's source that goes through a symlink is resolved and mounted.
func TestDiskSourceSwappedAfterCheck(t *testing.T) {
	d, _ := withImage(t)
	root := t.TempDir()
	allowed, secret := filepath.Join(root, "allowed"), filepath.Join(root, "secret")
	for dir, content := range map[string]string{filepath.Join(allowed, "sub", "data"): "allowed\n", filepath.Join(secret, "data"): "secret\n"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "marker"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if r := d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "disks", ProjectPut: api.ProjectPut{Config: map[string]string{
		"features.images": "false", "restricted": "true", "restricted.devices.disk": "allow",
		"restricted.devices.disk.paths": allowed}}}); r.Status != 201 {
		t.Fatalf("project: %d %s", r.Status, r.Raw)
	}
	src := filepath.Join(allowed, "sub", "data")
	dev := map[string]map[string]string{"data": {"type": "disk", "source": src, "path": "/mnt/data"}}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances?project=disks", createBody("ds1", nil, dev)))

	// The owner of allowed/ swaps sub for a link to the secret tree.
	sub := filepath.Join(allowed, "sub")
	if err := os.Rename(sub, sub+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, sub); err != nil {
		t.Fatal(err)
	}
	op := wait(t, d, d.Do("PUT", "/1.0/instances/ds1/state?project=disks", map[string]any{"action": "start"}))
	if op.Status == "Success" {
		_, out := execOutProject(t, d, "disks", "ds1", "cat", "/mnt/data/marker")
		t.Fatalf("started with a swapped source; the container reads %q", out)
	}
	if !strings.Contains(op.Err, "data") {
		t.Errorf("start error does not name the device: %q", op.Err)
	}
	// A hot-plug of a source that resolves outside is refused up front.
	os.Remove(sub)
	if err := os.Rename(sub+".real", sub); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/ds1/state?project=disks", map[string]any{"action": "start"}))
	if code, out := execOutProject(t, d, "disks", "ds1", "cat", "/mnt/data/marker"); code != 0 || out != "allowed\n" {
		t.Fatalf("legitimate source: %d %q", code, out)
	}
	if err := os.Symlink(secret, filepath.Join(allowed, "link")); err != nil {
		t.Fatal(err)
	}
	r := d.Do("PATCH", "/1.0/instances/ds1?project=disks", map[string]any{"devices": map[string]map[string]string{
		"more": {"type": "disk", "source": filepath.Join(allowed, "link", "data"), "path": "/mnt/more"}}})
	if r.Status != 400 {
		t.Fatalf("hot-plug through a link out of the allowed tree: %d %s", r.Status, r.Raw)
	}
	if code, _ := execOutProject(t, d, "disks", "ds1", "test", "-e", "/mnt/more/marker"); code == 0 {
		t.Fatal("the secret tree is mounted")
	}

	// Outside restrictions, a source through a symlink is resolved first
	// and mounted (start and hot-plug).
	launch(t, d, "ds2", nil)
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/ds2", map[string]any{"devices": map[string]map[string]string{
		"viaLink": {"type": "disk", "source": filepath.Join(allowed, "link", "data"), "path": "/mnt/v"}}}))
	if _, out := execOut(t, d, "ds2", "cat", "/mnt/v/marker"); out != "secret\n" {
		t.Fatalf("hot-plugged via link reads %q", out)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/ds2/state", map[string]any{"action": "restart", "force": true}))
	if _, out := execOut(t, d, "ds2", "cat", "/mnt/v/marker"); out != "secret\n" {
		t.Fatalf("after restart via link reads %q", out)
	}
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/ds1?project=disks&force=true", nil))
}

// execOutProject is execOut for an instance of another project.
func execOutProject(t testing.TB, d *testdaemon.Daemon, project, name string, cmd ...string) (int, string) {
	t.Helper()
	op := mustSucceed(t, d, d.Do("POST", "/1.0/instances/"+name+"/exec?project="+project, map[string]any{
		"command": cmd, "record-output": true,
	}))
	code := int(op.Metadata["return"].(float64))
	out := op.Metadata["output"].(map[string]any)
	res, err := d.HTTPClient().Get("http://moat" + out["1"].(string) + "?project=" + project)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return code, string(b)
}
