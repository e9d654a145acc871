package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// userOp runs an async request as uid on the per-user socket and waits for
// its operation.
func userOp(t *testing.T, d *testdaemon.Daemon, uid, gid, method, path, body string) api.Operation {
	t.Helper()
	env, err := userCall(t, d, uid, gid, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != api.AsyncResponse {
		t.Fatalf("%s %s as %s: %d %q", method, path, uid, env.ErrorCode, env.Error)
	}
	var op api.Operation
	_ = json.Unmarshal(env.Metadata, &op)
	env, err = userCall(t, d, uid, gid, "GET", "/1.0/operations/"+op.ID+"/wait?timeout=60", "")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(env.Metadata, &op)
	return op
}

// TestUserSocketContainers: users of the per-user socket run their own
// containers in their own projects, and nothing more.
func TestUserSocketContainers(t *testing.T) {
	testdaemon.RequireRoot(t)
	gid := ensureUserGroup(t)
	img, _ := testdaemon.BusyboxImage(t)
	// The users upload the image themselves: give them a readable copy.
	dir, err := os.MkdirTemp("", "moat-userimg-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	shared := filepath.Join(dir, "busybox.tar.gz")
	if out, err := exec.Command("cp", img, shared).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	_ = os.Chmod(shared, 0o644)
	d := testdaemon.Start(t, "--user-group", userGroup)
	t.Cleanup(func() {
		for _, p := range []string{"user-65534", "user-65533"} {
			var names []string
			d.Do("GET", "/1.0/instances?project="+p, nil).Metadata(t, &names)
			for _, n := range names {
				wait(t, d, d.Do("DELETE", n+"&force=true", nil))
			}
		}
	})

	const alice, bob = "65534", "65533"
	op := userOp(t, d, alice, gid, "POST", "/1.0/images", "@"+shared)
	if op.Status != "Success" {
		t.Fatalf("image upload by a user: %s %s", op.Status, op.Err)
	}
	fp, _ := op.Metadata["fingerprint"].(string)
	if env, _ := userCall(t, d, alice, gid, "POST", "/1.0/images/aliases", `{"name":"bb","target":"`+fp+`"}`); env.ErrorCode != 0 {
		t.Fatalf("alias: %q", env.Error)
	}
	op = userOp(t, d, alice, gid, "POST", "/1.0/instances", `{"name":"c1","source":{"type":"image","alias":"bb"},"start":true}`)
	if op.Status != "Success" {
		t.Fatalf("launch by a user: %s", op.Err)
	}
	// The user's own uid is mapped through (its default profile); the
	// rest of the container runs in an isolated range.
	op = userOp(t, d, alice, gid, "POST", "/1.0/instances/c1/exec", `{"command":["cat","/proc/self/uid_map"],"record-output":true}`)
	if op.Status != "Success" || op.Metadata["return"] != float64(0) {
		t.Fatalf("exec by a user: %s %v %s", op.Status, op.Metadata["return"], op.Err)
	}
	out := op.Metadata["output"].(map[string]any)["1"].(string)
	raw, err := exec.Command("setpriv", "--reuid="+alice, "--regid="+alice, "--groups="+gid,
		"curl", "-sS", "--unix-socket", d.Dir+"/user/unix.socket", "http://moat"+out).Output()
	if err != nil || !strings.Contains(string(raw), "65534      65534          1") || strings.Contains(string(raw), "4294967295") {
		t.Fatalf("uid_map inside the user's container: %v %q", err, raw)
	}

	// Escalation is refused, even in the user's own project.
	for _, body := range []string{
		`{"name":"p","source":{"type":"image","alias":"bb"},"config":{"security.privileged":"true"}}`,
		`{"name":"n","source":{"type":"image","alias":"bb"},"config":{"security.nesting":"true"}}`,
		`{"name":"h","source":{"type":"image","alias":"bb"},"devices":{"etc":{"type":"disk","source":"/etc","path":"/mnt"}}}`,
		`{"name":"r","source":{"type":"image","alias":"bb"},"config":{"raw.idmap":"both 0 0"}}`,
	} {
		env, _ := userCall(t, d, alice, gid, "POST", "/1.0/instances", body)
		if env.ErrorCode != 400 && env.ErrorCode != 403 {
			t.Errorf("user create %s: %d %q", body, env.ErrorCode, env.Error)
		}
	}
	if env, _ := userCall(t, d, alice, gid, "PATCH", "/1.0/profiles/default", `{"config":{"raw.idmap":"both 0 0"}}`); env.ErrorCode != 400 && env.ErrorCode != 403 {
		t.Errorf("user widening its profile's raw.idmap: %d %q", env.ErrorCode, env.Error)
	}

	// Another user sees none of it.
	env, _ := userCall(t, d, bob, gid, "GET", "/1.0/instances", "")
	var names []string
	_ = json.Unmarshal(env.Metadata, &names)
	if len(names) != 0 {
		t.Fatalf("bob sees instances %v", names)
	}
	for _, path := range []string{"/1.0/instances/c1?project=user-65534", "/1.0/instances?project=user-65534", "/1.0/images?project=user-65534"} {
		if env, _ := userCall(t, d, bob, gid, "GET", path, ""); env.ErrorCode != 404 {
			t.Errorf("bob GET %s: %d", path, env.ErrorCode)
		}
	}
	if env, _ := userCall(t, d, bob, gid, "DELETE", "/1.0/instances/c1?project=user-65534", ""); env.ErrorCode != 404 {
		t.Fatalf("bob deleting alice's container: %d %q", env.ErrorCode, env.Error)
	}

	op = userOp(t, d, alice, gid, "DELETE", "/1.0/instances/c1?force=true", "")
	if op.Status != "Success" {
		t.Fatalf("user deleting its container: %s", op.Err)
	}
}
