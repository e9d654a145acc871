package integration

import (
	"encoding/json"
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
		e := nextEvent(t, ev, func(e api.Event) bool {
			var lc api.EventLifecycle
			return json.Unmarshal(e.Metadata, &lc) == nil && lc.Action == action
		})
		var lc api.EventLifecycle
		_ = json.Unmarshal(e.Metadata, &lc)
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
