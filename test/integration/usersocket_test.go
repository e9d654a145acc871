package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

const userGroup = "moat-users-test"

func ensureUserGroup(t *testing.T) string {
	t.Helper()
	if g, err := user.LookupGroup(userGroup); err == nil {
		return g.Gid
	}
	if out, err := exec.Command("groupadd", "--system", userGroup).CombinedOutput(); err != nil {
		t.Fatalf("groupadd: %v: %s", err, out)
	}
	g, err := user.LookupGroup(userGroup)
	if err != nil {
		t.Fatal(err)
	}
	return g.Gid
}

// userCall sends a request to the per-user socket as uid (gid = uid) with
// the given supplementary groups, and decodes the envelope.
func userCall(t *testing.T, d *testdaemon.Daemon, uid, groups, method, path, body string) (api.Response, error) {
	t.Helper()
	args := []string{"--reuid=" + uid, "--regid=" + uid}
	if groups == "" {
		args = append(args, "--clear-groups")
	} else {
		args = append(args, "--groups="+groups)
	}
	args = append(args, "curl", "-sS", "--unix-socket", d.Dir+"/user/unix.socket", "-X", method)
	if body != "" {
		// "@file" uploads a file as is; anything else is sent as JSON.
		args = append(args, "--data-binary", body)
	}
	args = append(args, "http://moat"+path)
	out, err := exec.Command("setpriv", args...).Output()
	if err != nil {
		return api.Response{}, err
	}
	var env api.Response
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatalf("%s %s as %s: %v: %s", method, path, uid, err, out)
	}
	return env, nil
}

func TestUserSocketConfinement(t *testing.T) {
	testdaemon.RequireRoot(t)
	gid := ensureUserGroup(t)
	d := testdaemon.Start(t, "--user-group", userGroup)

	fi, err := os.Stat(d.Dir + "/user/unix.socket")
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("user socket: %v %v\n%s", err, fi, d.Logs())
	}
	// Outside the group: no connection at all.
	if _, err := userCall(t, d, "65534", "", "GET", "/1.0", ""); err == nil {
		t.Fatal("a user outside the user group reached the user socket")
	}

	for _, uid := range []string{"65534", "65533"} {
		env, err := userCall(t, d, uid, gid, "GET", "/1.0/projects", "")
		if err != nil {
			t.Fatal(err)
		}
		var projects []string
		_ = json.Unmarshal(env.Metadata, &projects)
		if len(projects) != 1 || projects[0] != "/1.0/projects/user-"+uid {
			t.Fatalf("uid %s sees projects %v", uid, projects)
		}
	}

	// The project was created restricted, tied to the user's ids.
	var p api.Project
	d.Do("GET", "/1.0/projects/user-65534", nil).Metadata(t, &p)
	if p.Config["restricted"] != "true" || p.Config["restricted.idmap.uid"] != "65534" || p.Config["features.networks"] != "false" {
		t.Fatalf("user project config = %v", p.Config)
	}

	// Server config, other users' projects, project edits and creation are
	// all out of reach; the legitimate view still works.
	env, _ := userCall(t, d, "65534", gid, "GET", "/1.0", "")
	var srv api.Server
	_ = json.Unmarshal(env.Metadata, &srv)
	if srv.Auth != "trusted" || srv.Environment.Project != "user-65534" || len(srv.Config) != 0 {
		t.Fatalf("GET /1.0 for a user: auth %q project %q config %v", srv.Auth, srv.Environment.Project, srv.Config)
	}
	d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"user.secret": "x"}})
	env, _ = userCall(t, d, "65534", gid, "GET", "/1.0", "")
	if strings.Contains(string(env.Metadata), "user.secret") {
		t.Fatal("a confined user reads the server config")
	}
	denied := []struct{ method, path, body string }{
		{"PATCH", "/1.0", `{"config":{"user.x":"1"}}`},
		{"POST", "/1.0/projects", `{"name":"mine"}`},
		{"GET", "/1.0/projects/user-65533", ""},
		{"GET", "/1.0/projects/default", ""},
		{"PATCH", "/1.0/projects/user-65534", `{"config":{"restricted":"false"}}`},
		{"DELETE", "/1.0/projects/user-65534", ""},
		{"GET", "/1.0/events?project=user-65533", ""},
		{"GET", "/1.0/operations?project=default", ""},
		{"GET", "/1.0/events?type=logging", ""},
	}
	for _, c := range denied {
		env, err := userCall(t, d, "65534", gid, c.method, c.path, c.body)
		if err != nil {
			t.Fatal(err)
		}
		if env.ErrorCode != 403 && env.ErrorCode != 404 {
			t.Errorf("%s %s as a confined user: %d %q", c.method, c.path, env.ErrorCode, env.Error)
		}
	}
	d.Do("GET", "/1.0/projects/user-65534", nil).Metadata(t, &p)
	if p.Config["restricted"] != "true" {
		t.Fatal("the user lifted its own restriction")
	}
	if env, _ := userCall(t, d, "65534", gid, "GET", "/1.0/operations", ""); env.ErrorCode != 0 {
		t.Fatalf("a user cannot list its own operations: %q", env.Error)
	}

	// The real lxc client and moat work over the user socket too.
	conf, err := os.MkdirTemp("", "moat-userconf-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(conf)
	_ = os.Chown(conf, 65534, 65534)
	asUser := func(env []string, args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--groups=" + gid}, args...)...)
		cmd.Env = append(env, "PATH=/usr/bin:/bin", "HOME="+conf)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	lxcEnv := []string{"LXD_DIR=" + d.Dir + "/user", "LXD_CONF=" + conf}
	out, err := asUser(lxcEnv, "lxc", "project", "list", "--format=csv")
	if err != nil || !strings.Contains(out, "user-65534") || strings.Contains(out, "user-65533") || strings.Contains(out, "default,") {
		t.Fatalf("lxc project list as a user: %v\n%s", err, out)
	}
	if out, err := asUser(lxcEnv, "lxc", "config", "set", "user.x", "y"); err == nil {
		t.Fatalf("lxc config set as a user succeeded: %s", out)
	}
	moat := filepath.Join(conf, "moat")
	if out, err := exec.Command("go", "build", "-o", moat, "../../cmd/moat").CombinedOutput(); err != nil {
		t.Fatalf("build moat: %v %s", err, out)
	}
	_ = os.Chmod(moat, 0o755)
	out, err = asUser([]string{"MOAT_DIR=" + d.Dir + "/user", "MOAT_CONF=" + conf}, moat, "project", "list", "--format", "csv")
	if err != nil || !strings.Contains(out, "user-65534") || strings.Contains(out, "user-65533") {
		t.Fatalf("moat project list as a user: %v\n%s", err, out)
	}
}
