package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	_ "modernc.org/sqlite"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// createIn asks for an instance from the default project's image "bb" in
// project, with the given profiles, and deletes it at the end of the test.
func createIn(t *testing.T, d *testdaemon.Daemon, project, name string, profiles []string, start bool) {
	t.Helper()
	q := "?project=" + project
	mustSucceed(t, d, d.Do("POST", "/1.0/instances"+q, map[string]any{
		"name": name, "source": map[string]string{"type": "image", "alias": "bb"}, "profiles": profiles, "start": start,
	}))
	t.Cleanup(func() {
		res := d.Do("DELETE", "/1.0/instances/"+name+q+"&force=true", nil)
		if res.Status == 404 {
			return
		}
		if op := wait(t, d, res); op.Status != "Success" {
			t.Errorf("cleanup: deleting %s in %s: %s", name, project, op.Err)
		}
	})
}

// mustStatus fails unless res has the status code and, for errors, an
// error message containing every one of parts.
func mustStatus(t *testing.T, what string, res testdaemon.Result, code int, parts ...string) {
	t.Helper()
	if res.Status != code {
		t.Fatalf("%s: status %d, want %d: %s", what, res.Status, code, res.Raw)
	}
	for _, p := range parts {
		if !strings.Contains(res.Body.Error, p) {
			t.Fatalf("%s: error %q does not contain %q", what, res.Body.Error, p)
		}
	}
}

func newProject(t *testing.T, d *testdaemon.Daemon, name string, cfg map[string]string) {
	t.Helper()
	mustStatus(t, "create project "+name, d.Do("POST", "/1.0/projects", map[string]any{"name": name, "config": cfg}), 201)
}

// TestProfileRenameReachesOtherProjects: a project without its own
// profiles uses the default project's; renaming one of those renames the
// reference of every instance using it there too, and of nothing else (a
// project with its own profile of the same name keeps it).
func TestProfileRenameReachesOtherProjects(t *testing.T) {
	d, _ := withImage(t)
	newProject(t, d, "p2", map[string]string{"features.profiles": "false", "features.images": "false"})
	newProject(t, d, "p3", map[string]string{"features.profiles": "true", "features.images": "false"})
	mustStatus(t, "create x", d.Do("POST", "/1.0/profiles", map[string]any{"name": "x", "config": map[string]string{"user.from": "default"}}), 201)
	mustStatus(t, "create x in p3", d.Do("POST", "/1.0/profiles?project=p3", map[string]any{"name": "x", "config": map[string]string{"user.from": "p3"}}), 201)
	createIn(t, d, "p2", "pi", []string{"default", "x"}, false)
	createIn(t, d, "p3", "qi", []string{"default", "x"}, false)
	createIn(t, d, "default", "di", []string{"default", "x"}, false)

	mustStatus(t, "rename x", d.Do("POST", "/1.0/profiles/x", map[string]string{"name": "y"}), 201)

	var names []string
	res := d.Do("GET", "/1.0/instances?project=p2", nil)
	mustStatus(t, "list p2", res, 200)
	res.Metadata(t, &names)
	if !slices.Equal(names, []string{"/1.0/instances/pi?project=p2"}) {
		t.Fatalf("p2 lists %v", names)
	}
	for _, c := range []struct{ project, name, profile, from string }{
		{"p2", "pi", "y", "default"}, {"default", "di", "y", "default"}, {"p3", "qi", "x", "p3"},
	} {
		var inst api.Instance
		res := d.Do("GET", "/1.0/instances/"+c.name+"?project="+c.project, nil)
		mustStatus(t, "get "+c.name, res, 200)
		res.Metadata(t, &inst)
		if !slices.Equal(inst.Profiles, []string{"default", c.profile}) || inst.ExpandedConfig["user.from"] != c.from {
			t.Fatalf("%s in %s after the rename: profiles %v, user.from %q", c.name, c.project, inst.Profiles, inst.ExpandedConfig["user.from"])
		}
	}
	mustStatus(t, "p3's own x", d.Do("GET", "/1.0/profiles/x?project=p3", nil), 200)
	mustStatus(t, "old name", d.Do("GET", "/1.0/profiles/x", nil), 404)
	var y api.Profile
	d.Do("GET", "/1.0/profiles/y", nil).Metadata(t, &y)
	slices.Sort(y.UsedBy)
	if !slices.Equal(y.UsedBy, []string{"/1.0/instances/di", "/1.0/instances/pi?project=p2"}) {
		t.Fatalf("y used_by %v", y.UsedBy)
	}
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/pi?project=p2", nil))
	mustStatus(t, "pi after delete", d.Do("GET", "/1.0/instances/pi?project=p2", nil), 404)
}

// nextLifecycle reads lifecycle events until one has the action, failing
// after a bounded wait.
func nextLifecycle(t *testing.T, c *websocket.Conn, action string) (api.Event, api.EventLifecycle) {
	t.Helper()
	var lc api.EventLifecycle
	ev := nextEvent(t, c, func(ev api.Event) bool {
		return ev.Type == "lifecycle" && json.Unmarshal(ev.Metadata, &lc) == nil && lc.Action == action
	})
	return ev, lc
}

// TestProfileEventsAndRefusals: create, update, rename and delete each
// emit their lifecycle event with the LXD source URL and the requestor;
// the default profile cannot be deleted or renamed; a profile in use
// cannot be deleted and the error names the users; a PUT with a stale
// ETag changes nothing.
func TestProfileEventsAndRefusals(t *testing.T) {
	d, _ := withImage(t)
	newProject(t, d, "pe", map[string]string{"features.profiles": "true"})
	life := dialEvents(t, d, "?type=lifecycle&all-projects=true")
	root := func(what string, lc api.EventLifecycle) {
		t.Helper()
		if r := lc.Requestor; r == nil || r.Username != "root" || r.Protocol != "unix" || r.Address != "@" {
			t.Fatalf("%s: requestor %+v", what, lc.Requestor)
		}
	}
	for _, c := range []struct{ project, q string }{{"default", ""}, {"pe", "?project=pe"}} {
		mustStatus(t, "create", d.Do("POST", "/1.0/profiles"+c.q, map[string]string{"name": "ev"}), 201)
		ev, lc := nextLifecycle(t, life, "profile-created")
		if lc.Source != "/1.0/profiles/ev"+c.q || ev.Project != c.project {
			t.Fatalf("profile-created: source %q project %q", lc.Source, ev.Project)
		}
		root("profile-created", lc)
		mustStatus(t, "patch", d.Do("PATCH", "/1.0/profiles/ev"+c.q, map[string]any{"config": map[string]string{"user.a": "1"}}), 200)
		ev, lc = nextLifecycle(t, life, "profile-updated")
		if lc.Source != "/1.0/profiles/ev"+c.q || ev.Project != c.project {
			t.Fatalf("profile-updated: source %q project %q", lc.Source, ev.Project)
		}
		root("profile-updated", lc)
		mustStatus(t, "rename", d.Do("POST", "/1.0/profiles/ev"+c.q, map[string]string{"name": "ev2"}), 201)
		ev, lc = nextLifecycle(t, life, "profile-renamed")
		if lc.Source != "/1.0/profiles/ev2"+c.q || ev.Project != c.project || lc.Context["old_name"] != "ev" {
			t.Fatalf("profile-renamed: source %q project %q context %v", lc.Source, ev.Project, lc.Context)
		}
		root("profile-renamed", lc)
		mustStatus(t, "delete", d.Do("DELETE", "/1.0/profiles/ev2"+c.q, nil), 200)
		ev, lc = nextLifecycle(t, life, "profile-deleted")
		if lc.Source != "/1.0/profiles/ev2"+c.q || ev.Project != c.project {
			t.Fatalf("profile-deleted: source %q project %q", lc.Source, ev.Project)
		}
		root("profile-deleted", lc)

		// As in LXD, the default profile stays: 403 naming it.
		mustStatus(t, "delete default", d.Do("DELETE", "/1.0/profiles/default"+c.q, nil), 403, `"default" profile cannot be deleted`)
		mustStatus(t, "rename default", d.Do("POST", "/1.0/profiles/default"+c.q, map[string]string{"name": "other"}), 403, `"default" profile cannot be renamed`)
		mustStatus(t, "default after", d.Do("GET", "/1.0/profiles/default"+c.q, nil), 200)
		mustStatus(t, "other after", d.Do("GET", "/1.0/profiles/other"+c.q, nil), 404)
	}

	// In use: refused, naming the instance; free again once unused.
	mustStatus(t, "create used", d.Do("POST", "/1.0/profiles", map[string]string{"name": "used"}), 201)
	createIn(t, d, "default", "u1", []string{"default", "used"}, false)
	mustStatus(t, "delete in use", d.Do("DELETE", "/1.0/profiles/used", nil), 400, "in use", "/1.0/instances/u1")
	mustStatus(t, "used still there", d.Do("GET", "/1.0/profiles/used", nil), 200)

	// If-Match: a stale ETag is a 412 and changes nothing.
	res := d.Do("GET", "/1.0/profiles/used", nil)
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("GET profile sent no ETag")
	}
	put := func(desc, match string) testdaemon.Result {
		return testdaemon.DoWith(t, d.HTTPClient(), "PUT", "/1.0/profiles/used",
			map[string]any{"description": desc, "config": map[string]string{}, "devices": map[string]any{}}, map[string]string{"If-Match": match})
	}
	mustStatus(t, "PUT with a made-up ETag", put("bad", `"0000"`), 412)
	mustStatus(t, "PUT with the current ETag", put("first", etag), 200)
	mustStatus(t, "PUT with the now stale ETag", put("second", etag), 412)
	var p api.Profile
	d.Do("GET", "/1.0/profiles/used", nil).Metadata(t, &p)
	if p.Description != "first" {
		t.Fatalf("description after the stale PUT: %q", p.Description)
	}

	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/u1", map[string]any{"profiles": []string{"default"}}))
	mustStatus(t, "delete unused", d.Do("DELETE", "/1.0/profiles/used", nil), 200)
}

// TestProfileDeviceReachesRunningInstance: a read-only disk added to a
// profile appears at once in a running container using it, cannot be
// written, and goes away when removed from the profile.
func TestProfileDeviceReachesRunningInstance(t *testing.T) {
	d, _ := withImage(t)
	src := hostSource(t)
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("from profile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, "create pdev", d.Do("POST", "/1.0/profiles", map[string]string{"name": "pdev"}), 201)
	createIn(t, d, "default", "pd1", []string{"default", "pdev"}, true)

	mustStatus(t, "add disk", d.Do("PATCH", "/1.0/profiles/pdev", map[string]any{"devices": map[string]any{
		"data": map[string]string{"type": "disk", "source": src, "path": "/mnt/pd", "readonly": "true"}}}), 200)
	if code, out := execOut(t, d, "pd1", "cat", "/mnt/pd/marker"); code != 0 || out != "from profile\n" {
		t.Fatalf("profile disk in the running container: %d %q", code, out)
	}
	if code, _ := execOut(t, d, "pd1", "sh", "-c", "echo x > /mnt/pd/new"); code == 0 {
		t.Fatal("write to the read-only profile disk succeeded")
	}
	if _, err := os.Stat(filepath.Join(src, "new")); err == nil {
		t.Fatal("the read-only profile disk was written to")
	}

	mustStatus(t, "remove disk", d.Do("PUT", "/1.0/profiles/pdev", map[string]any{"config": map[string]string{}, "devices": map[string]any{}}), 200)
	if code, out := execOut(t, d, "pd1", "sh", "-c", "test -e /mnt/pd/marker"); code == 0 {
		t.Fatalf("profile disk still there after removal: %q", out)
	}
}

// TestProfileUpdateLiveFailureGoesOn: a profile change that cannot be
// applied to one running instance stays stored for it (reported as an
// instance update reports it), is still applied to the others, and is
// announced.
func TestProfileUpdateLiveFailureGoesOn(t *testing.T) {
	d, _ := withImage(t)
	src := hostSource(t)
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, "create pf", d.Do("POST", "/1.0/profiles", map[string]string{"name": "pf"}), 201)
	createIn(t, d, "default", "pa1", []string{"default", "pf"}, true)
	createIn(t, d, "default", "pa2", []string{"default", "pf"}, true)
	// In pa1 (the first the profile update reaches) a file sits where the
	// disk's mount point needs a directory: the live mount fails there.
	if code, _ := execOut(t, d, "pa1", "sh", "-c", "mkdir -p /mnt && touch /mnt/pf"); code != 0 {
		t.Fatal("cannot make the blocking file")
	}
	life := dialEvents(t, d, "?type=lifecycle")

	res := d.Do("PATCH", "/1.0/profiles/pf", map[string]any{"devices": map[string]any{
		"d": map[string]string{"type": "disk", "source": src, "path": "/mnt/pf/d", "readonly": "true"}}})
	mustStatus(t, "patch pf", res, 500, "config stored; it applies at the next start")
	if code, out := execOut(t, d, "pa2", "cat", "/mnt/pf/d/marker"); code != 0 || out != "m\n" {
		t.Fatalf("pa2 did not get the disk: %d %q", code, out)
	}
	if _, lc := nextLifecycle(t, life, "profile-updated"); lc.Source != "/1.0/profiles/pf" {
		t.Fatalf("profile-updated source %q", lc.Source)
	}
	if !strings.Contains(res.Body.Error, `Instance "pa1"`) || strings.Contains(res.Body.Error, "pa2") {
		t.Fatalf("the error should name pa1 and only pa1: %q", res.Body.Error)
	}
	for _, n := range []string{"pa1", "pa2"} {
		var inst api.Instance
		d.Do("GET", "/1.0/instances/"+n, nil).Metadata(t, &inst)
		if inst.ExpandedDevices["d"]["path"] != "/mnt/pf/d" {
			t.Fatalf("%s: stored devices %v", n, inst.ExpandedDevices)
		}
	}
}

// TestProfileReadsTakeNoWriteLock: reading profiles needs no write
// transaction once the project's default profile exists: with another
// writer holding the database's write lock they still answer at once.
// The lazily made default profile of a new project still appears.
func TestProfileReadsTakeNoWriteLock(t *testing.T) {
	d := testdaemon.Start(t)
	newProject(t, d, "pr", map[string]string{"features.profiles": "true"})
	var list []string
	d.Do("GET", "/1.0/profiles?project=pr", nil).Metadata(t, &list)
	if !slices.Equal(list, []string{"/1.0/profiles/default?project=pr"}) {
		t.Fatalf("pr profiles %v", list)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.Dir, "moat.db")+"?_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	// A read that wanted the write lock would wait for it (the daemon's
	// busy timeout is 10 s) and run into the client's timeout first: a
	// hang detector, not a timing assertion.
	quick := *d.HTTPClient()
	quick.Timeout = 5 * time.Second
	for _, path := range []string{"/1.0/profiles?project=pr", "/1.0/profiles/default?project=pr", "/1.0/profiles?recursion=1", "/1.0/profiles/default"} {
		res := testdaemon.DoWith(t, &quick, "GET", path, nil, nil)
		mustStatus(t, "GET "+path+" while another writer holds the lock", res, 200)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	newProject(t, d, "pz", map[string]string{"features.profiles": "true"})
	var p api.Profile
	res := d.Do("GET", "/1.0/profiles/default?project=pz", nil)
	mustStatus(t, "pz default", res, 200)
	res.Metadata(t, &p)
	if p.Devices["root"]["pool"] != "default" || p.Project != "pz" {
		t.Fatalf("pz default profile %+v", p)
	}
}

// TestProfileUsedByConfined: a default-project profile serves every
// project without features.profiles; a client confined to one of them
// sees in used_by, and in the delete refusal, only its own instances,
// while an admin sees all.
func TestProfileUsedByConfined(t *testing.T) {
	d, _ := withImage(t)
	for _, p := range []string{"p2", "p4"} {
		newProject(t, d, p, map[string]string{"features.profiles": "false", "features.images": "false"})
	}
	mustStatus(t, "create x", d.Do("POST", "/1.0/profiles", map[string]string{"name": "x"}), 201)
	createIn(t, d, "p2", "ci2", []string{"default", "x"}, false)
	createIn(t, d, "p4", "ci4", []string{"default", "x"}, false)
	as, _ := restrictedClient(t, d, "p2")

	var p api.Profile
	res := as("GET", "/1.0/profiles/x?project=p2", nil)
	mustStatus(t, "confined GET x", res, 200)
	res.Metadata(t, &p)
	if !slices.Equal(p.UsedBy, []string{"/1.0/instances/ci2?project=p2"}) {
		t.Fatalf("confined used_by %v", p.UsedBy)
	}
	d.Do("GET", "/1.0/profiles/x", nil).Metadata(t, &p)
	if slices.Sort(p.UsedBy); !slices.Equal(p.UsedBy, []string{"/1.0/instances/ci2?project=p2", "/1.0/instances/ci4?project=p4"}) {
		t.Fatalf("admin used_by %v", p.UsedBy)
	}
	res = as("DELETE", "/1.0/profiles/x?project=p2", nil)
	mustStatus(t, "confined delete in use", res, 400, "/1.0/instances/ci2?project=p2", "1 instance(s) in other projects")
	if strings.Contains(res.Body.Error, "ci4") {
		t.Fatalf("the refusal names another project's instance: %q", res.Body.Error)
	}
	mustStatus(t, "admin delete in use", d.Do("DELETE", "/1.0/profiles/x", nil), 400, "ci2", "ci4")
}
