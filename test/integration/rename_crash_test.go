package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/api"
)

// TestRenameInterruptedByCrash: moatd dies after a rename's database
// commit, before the storage moved (the state is made by hand: the row
// has the new name, the storage the old one, and the pool holds the
// rename's record). The next start finishes the move: the instance keeps
// its files under the new name and starts; nothing is removed as an
// interrupted create. A record of a rename that never reached the
// database is dropped and changes nothing.
func TestRenameInterruptedByCrash(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "ra", nil)
	if code, _ := execOut(t, d, "ra", "sh", "-c", "echo kept > /root/data"); code != 0 {
		t.Fatal("writing a file")
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/ra/state", map[string]any{"action": "stop", "force": true}))
	mustSucceed(t, d, d.Do("POST", "/1.0/instances/ra", map[string]string{"name": "rb"}))
	launch(t, d, "other", nil)
	d.Kill()

	renamed := containerDir(t, d, "rb")
	old := strings.TrimSuffix(renamed, "rb") + "ra"
	if err := os.Rename(renamed, old); err != nil {
		t.Fatal(err)
	}
	pool := filepath.Dir(renamed)
	if err := os.WriteFile(filepath.Join(pool, ".rename-"+filepath.Base(renamed)), []byte(filepath.Base(old)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A rename of "other" recorded, but its row was never renamed.
	otherDir := containerDir(t, d, "other")
	ghost := strings.TrimSuffix(otherDir, "other") + "ghost"
	if err := os.WriteFile(filepath.Join(pool, ".rename-"+filepath.Base(ghost)), []byte(filepath.Base(otherDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Restart()

	if _, err := os.Stat(renamed); err != nil {
		t.Fatalf("the storage was not moved to the new name: %v", err)
	}
	if _, err := os.Stat(old); err == nil {
		t.Fatal("the old storage dir is still there")
	}
	if left, _ := filepath.Glob(filepath.Join(pool, ".rename-*")); len(left) != 0 {
		t.Fatalf("rename records left: %v", left)
	}
	if _, err := os.Stat(ghost); err == nil {
		t.Fatal("an uncommitted rename was carried out")
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/rb/state", map[string]any{"action": "start"}))
	if code, out := execOut(t, d, "rb", "cat", "/root/data"); code != 0 || out != "kept\n" {
		t.Fatalf("the renamed instance's file: %d %q", code, out)
	}
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/other/state", nil).Metadata(t, &st)
	if st.Status != "Running" {
		t.Fatalf("the other instance after the restart: %s", st.Status)
	}
	if code, _ := execOut(t, d, "other", "true"); code != 0 {
		t.Fatal("exec in the other instance")
	}
}

// TestRenameKeepsDataAndRefusesBadTargets: a rename moves the instance
// whole (its files, a start afterwards) and leaves no record behind; a
// running instance, an existing name and an invalid name are refused and
// change nothing.
func TestRenameKeepsDataAndRefusesBadTargets(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "n1", nil)
	launch(t, d, "n2", nil)
	if code, _ := execOut(t, d, "n1", "sh", "-c", "echo mine > /root/f"); code != 0 {
		t.Fatal("writing a file")
	}
	if r := d.Do("POST", "/1.0/instances/n1", map[string]string{"name": "n3"}); r.Status != 400 || !strings.Contains(r.Body.Error, "running") {
		t.Fatalf("renaming a running instance: %d %q", r.Status, r.Body.Error)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/n1/state", map[string]any{"action": "stop", "force": true}))
	if r := d.Do("POST", "/1.0/instances/n1", map[string]string{"name": "n2"}); r.Status != 409 {
		t.Fatalf("renaming onto an existing instance: %d %q", r.Status, r.Body.Error)
	}
	if r := d.Do("POST", "/1.0/instances/n1", map[string]string{"name": "bad/name"}); r.Status != 400 {
		t.Fatalf("renaming to an invalid name: %d %q", r.Status, r.Body.Error)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances/n1", map[string]string{"name": "n3"}))
	pool := filepath.Dir(containerDir(t, d, "n3"))
	if left, _ := filepath.Glob(filepath.Join(pool, ".rename-*")); len(left) != 0 {
		t.Fatalf("rename records left: %v", left)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/n3/state", map[string]any{"action": "start"}))
	if code, out := execOut(t, d, "n3", "cat", "/root/f"); code != 0 || out != "mine\n" {
		t.Fatalf("file after the rename: %d %q", code, out)
	}
	if r := d.Do("GET", "/1.0/instances/n1", nil); r.Status != 404 {
		t.Fatalf("old name after the rename: %d", r.Status)
	}
}
