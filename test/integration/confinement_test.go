package integration

import (
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// restrictedClient trusts a fresh client certificate restricted to
// projects and returns an HTTPS client for it and the base URL.
func restrictedClient(t *testing.T, d *testdaemon.Daemon, projects ...string) (func(method, path string, body any) testdaemon.Result, string) {
	t.Helper()
	base, _ := listenHTTPS(t, d)
	cert := clientCert(t)
	r := d.Do("POST", "/1.0/certificates", map[string]any{"name": "confined", "type": "client",
		"certificate": certB64(cert), "restricted": true, "projects": projects})
	if r.Status != 201 {
		t.Fatalf("trust restricted certificate: %d %s", r.Status, r.Raw)
	}
	hc := tlsClient(&cert)
	return func(method, path string, body any) testdaemon.Result {
		return testdaemon.DoWith(t, hc, method, base+path, body, nil)
	}, certFingerprint(cert)
}

func instanceNames(t *testing.T, d *testdaemon.Daemon, project string) []string {
	t.Helper()
	var names []string
	d.Do("GET", "/1.0/instances?project="+project, nil).Metadata(t, &names)
	return names
}

func createBody(name string, cfg map[string]string, devices map[string]map[string]string) map[string]any {
	return map[string]any{"name": name, "source": map[string]string{"type": "image", "alias": "bb"},
		"config": cfg, "devices": devices}
}

// TestDelegationFloor: a restricted certificate confined to an unrestricted
// project cannot get host-level power (LXD lets it); an admin can.
func TestDelegationFloor(t *testing.T) {
	d, _ := withImage(t)
	if r := d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "open", ProjectPut: api.ProjectPut{Config: map[string]string{"features.images": "false"}}}); r.Status != 201 {
		t.Fatalf("create project: %d %s", r.Status, r.Raw)
	}
	as, _ := restrictedClient(t, d, "open")

	attacks := []struct {
		name    string
		cfg     map[string]string
		devices map[string]map[string]string
		word    string
	}{
		{"privileged", map[string]string{"security.privileged": "true"}, nil, "security.privileged"},
		{"nesting", map[string]string{"security.nesting": "true"}, nil, "security.nesting"},
		{"raw.idmap", map[string]string{"raw.idmap": "both 0 0"}, nil, "raw.idmap"},
		{"idmap base", map[string]string{"security.idmap.base": "0"}, nil, "security.idmap.base"},
		{"host path", nil, map[string]map[string]string{"etc": {"type": "disk", "source": "/etc", "path": "/mnt/etc"}}, "etc"},
		{"device", nil, map[string]map[string]string{"mem": {"type": "unix-char", "path": "/dev/mem", "major": "1", "minor": "1"}}, "mem"},
	}
	for _, a := range attacks {
		r := as("POST", "/1.0/instances?project=open", createBody("x-"+strings.ReplaceAll(a.name, " ", ""), a.cfg, a.devices))
		if r.Status != 400 && r.Status != 403 || !strings.Contains(r.Body.Error, a.word) {
			t.Errorf("%s by a restricted certificate: %d %q", a.name, r.Status, r.Body.Error)
		}
	}
	if names := instanceNames(t, d, "open"); len(names) != 0 {
		t.Fatalf("refused creates left instances behind: %v", names)
	}

	// The legitimate path works for the restricted certificate...
	r := as("POST", "/1.0/instances?project=open", createBody("mine", nil, nil))
	if r.Status != 202 {
		t.Fatalf("plain create by the restricted certificate: %d %s", r.Status, r.Raw)
	}
	mustSucceed(t, d, r)
	// ...and cannot be turned into an escalation afterwards.
	for _, patch := range []map[string]any{
		{"config": map[string]string{"security.nesting": "true"}},
		{"config": map[string]string{"security.privileged": "true"}},
		{"devices": map[string]map[string]string{"root2": {"type": "disk", "source": "/", "path": "/host"}}},
	} {
		if r := as("PATCH", "/1.0/instances/mine?project=open", patch); r.Status != 400 && r.Status != 403 {
			t.Errorf("PATCH %v by the restricted certificate: %d %s", patch, r.Status, r.Raw)
		}
	}
	// The project's profiles are a way in too.
	if r := as("PATCH", "/1.0/profiles/default?project=open", map[string]any{"config": map[string]string{"security.privileged": "true"}}); r.Status != 400 && r.Status != 403 {
		t.Errorf("profile escalation by the restricted certificate: %d %s", r.Status, r.Raw)
	}
	// An admin may do what the certificate may not.
	mustSucceed(t, d, d.Do("POST", "/1.0/instances?project=open", createBody("adminpriv", map[string]string{"security.privileged": "true"}, nil)))

	// Restricting the project while it holds the privileged instance is
	// refused, naming it.
	r = d.Do("PATCH", "/1.0/projects/open", map[string]any{"config": map[string]string{"restricted": "true"}})
	if r.Status != 400 || !strings.Contains(r.Body.Error, "adminpriv") {
		t.Fatalf("restricting a project with a privileged instance: %d %q", r.Status, r.Body.Error)
	}
	var p api.Project
	d.Do("GET", "/1.0/projects/open", nil).Metadata(t, &p)
	if p.Config["restricted"] == "true" {
		t.Fatal("the refused change was applied")
	}
}

// TestProjectLimits: aggregate limits, the rule that every instance sets a
// capped limit, and the profile path LXD let through.
func TestProjectLimits(t *testing.T) {
	d, _ := withImage(t)
	d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "lim", ProjectPut: api.ProjectPut{Config: map[string]string{
		"features.images": "false", "limits.instances": "2", "limits.memory": "1GiB"}}})

	r := d.Do("POST", "/1.0/instances?project=lim", createBody("nolimit", nil, nil))
	if r.Status != 400 || !strings.Contains(r.Body.Error, `has no "limits.memory" config`) {
		t.Fatalf("instance without limits.memory: %d %q", r.Status, r.Body.Error)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances?project=lim", createBody("a", map[string]string{"limits.memory": "512MiB"}, nil)))
	r = d.Do("POST", "/1.0/instances?project=lim", createBody("b", map[string]string{"limits.memory": "600MiB"}, nil))
	if r.Status != 400 || !strings.Contains(r.Body.Error, "limits.memory") {
		t.Fatalf("over the memory total: %d %q", r.Status, r.Body.Error)
	}
	// Through the profile: b takes its limit from the default profile.
	if r := d.Do("PATCH", "/1.0/profiles/default?project=lim", map[string]any{"config": map[string]string{"limits.memory": "256MiB"}}); r.Status != 200 {
		t.Fatalf("profile limit: %d %s", r.Status, r.Raw)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances?project=lim", createBody("b", nil, nil)))
	// Raising the profile's limit would take the project over its total.
	r = d.Do("PATCH", "/1.0/profiles/default?project=lim", map[string]any{"config": map[string]string{"limits.memory": "800MiB"}})
	if r.Status != 400 || !strings.Contains(r.Body.Error, "limits.memory") {
		t.Fatalf("profile change over the project limit: %d %q", r.Status, r.Body.Error)
	}
	r = d.Do("POST", "/1.0/instances?project=lim", createBody("c", map[string]string{"limits.memory": "4MiB"}, nil))
	if r.Status != 400 || !strings.Contains(r.Body.Error, "limits.instances") {
		t.Fatalf("third instance: %d %q", r.Status, r.Body.Error)
	}
	var st api.ProjectState
	d.Do("GET", "/1.0/projects/lim/state", nil).Metadata(t, &st)
	if st.Resources["memory"].Usage != 768<<20 || st.Resources["instances"].Usage != 2 || st.Resources["memory"].Limit != 1<<30 {
		t.Fatalf("project state = %+v", st.Resources)
	}
	// Lowering the project limit under current usage is refused.
	r = d.Do("PATCH", "/1.0/projects/lim", map[string]any{"config": map[string]string{"limits.memory": "512MiB"}})
	if r.Status != 400 {
		t.Fatalf("limit below usage: %d %q", r.Status, r.Body.Error)
	}
}

// TestHardenedProfile applies the hardening guide's profile (in the keys
// Moat implements) and checks deletion protection and the refused values.
func TestHardenedProfile(t *testing.T) {
	d, _ := withImage(t)
	hardened := map[string]string{
		"boot.autostart": "false", "limits.cpu": "1", "limits.memory": "256MiB", "limits.processes": "500",
		"security.devlxd": "false", "security.idmap.isolated": "true", "security.nesting": "false",
		"security.privileged": "false", "security.protection.delete": "true", "security.syscalls.deny_default": "true",
	}
	if r := d.Do("POST", "/1.0/profiles", map[string]any{"name": "hardened1", "config": hardened}); r.Status != 201 {
		t.Fatalf("hardened1 profile: %d %s", r.Status, r.Raw)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "h1", "profiles": []string{"default", "hardened1"},
		"source": map[string]string{"type": "image", "alias": "bb"}}))
	if r := d.Do("DELETE", "/1.0/instances/h1", nil); r.Status != 400 || !strings.Contains(r.Body.Error, "security.protection.delete") {
		t.Fatalf("deleting a protected instance: %d %q", r.Status, r.Body.Error)
	}
	for k, v := range map[string]string{"security.devlxd": "true", "security.syscalls.deny_default": "false"} {
		if r := d.Do("PATCH", "/1.0/profiles/hardened1", map[string]any{"config": map[string]string{k: v}}); r.Status != 400 || !strings.Contains(r.Body.Error, k) {
			t.Errorf("%s=%s: %d %q", k, v, r.Status, r.Body.Error)
		}
	}
	mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/profiles/hardened1", map[string]any{"config": map[string]string{"security.protection.delete": "false"}}))
	mustSucceedOrSync(t, d, d.Do("DELETE", "/1.0/instances/h1", nil))
}

// mustSucceedOrSync accepts a sync success or a successful operation.
func mustSucceedOrSync(t *testing.T, d *testdaemon.Daemon, r testdaemon.Result) {
	t.Helper()
	if r.Status == 200 {
		return
	}
	mustSucceed(t, d, r)
}
