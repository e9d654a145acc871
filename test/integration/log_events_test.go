package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/api"
)

// TestLogAndUpdateEvents: reading and deleting an exec log emit
// instance-log-retrieved and instance-log-deleted with the log's URL and
// the requestor; an update stored but not applicable to the running
// container (a disk under a container user's symlink) still emits
// instance-updated.
func TestLogAndUpdateEvents(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "le", nil)
	op := recorded(t, d, "le", map[string]any{"command": []string{"echo", "x"}})
	url := op.Metadata["output"].(map[string]any)["1"].(string)
	ev := dialEvents(t, d, "?type=lifecycle")
	expect := func(action, source string) {
		t.Helper()
		_, lc := nextLifecycle(t, ev, action)
		if lc.Source != source || lc.Requestor == nil || lc.Requestor.Username != "root" {
			t.Errorf("%s: source %q requestor %+v", action, lc.Source, lc.Requestor)
		}
	}
	if status, body, _ := getLog(t, d, url); status != 200 || body != "x\n" {
		t.Fatalf("GET %s: %d %q", url, status, body)
	}
	expect("instance-log-retrieved", url)
	if r := d.Do("DELETE", url, nil); r.Status != 200 {
		t.Fatalf("DELETE %s: %d", url, r.Status)
	}
	expect("instance-log-deleted", "/1.0/instances/le/logs/"+filepath.Base(url))

	if code, _ := execOut(t, d, "le", "sh", "-c", "mkdir -p /home/u && ln -s /etc /home/u/link && chown -h 1000:1000 /home/u/link"); code != 0 {
		t.Fatal("planting the symlink failed")
	}
	res := putDevices(t, d, "le", map[string]map[string]string{
		"z": {"type": "disk", "source": hostSource(t), "path": "/home/u/link/z"},
	})
	if res.Status < 400 || !strings.Contains(res.Body.Error, "next start") {
		t.Fatalf("unappliable change: %d %q", res.Status, res.Body.Error)
	}
	expect("instance-updated", "/1.0/instances/le")
}

// TestExecLogsTidiedAtStart: at start moatd moves an instance's log
// directory named after the instance (an older moatd's layout) to its
// volatile.uuid, so the logs are served again, and deletes directories
// of no instance.
func TestExecLogsTidiedAtStart(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "old", nil)
	op := recorded(t, d, "old", map[string]any{"command": []string{"echo", "kept"}})
	url := op.Metadata["output"].(map[string]any)["1"].(string)
	var in api.Instance
	d.Do("GET", "/1.0/instances/old", nil).Metadata(t, &in)
	logs := filepath.Join(d.Dir, "logs")
	byUUID := filepath.Join(logs, in.Config["volatile.uuid"])
	byName := filepath.Join(logs, filepath.Base(containerDir(t, d, "old")))
	orphan := filepath.Join(logs, "0b7c3bd2-5c8e-4b7e-9d5c-2f1a6c0e9a11")
	d.Stop()
	if err := os.Rename(byUUID, byName); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan, "exec_x.stdout"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if status, body, _ := getLog(t, d, url); status != 200 || body != "kept\n" {
		t.Fatalf("log after the layout change: %d %q", status, body)
	}
	for _, gone := range []string{byName, orphan} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s is still there", gone)
		}
	}
}
