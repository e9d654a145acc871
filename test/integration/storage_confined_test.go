package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/moat/moat/api"
)

// TestStoragePoolUsedByConfined: a pool is server-level, but its used_by
// names instances and profiles of every project. A certificate confined
// to one project sees only that project's entries (by name and in the
// recursive list) and no config; an admin sees every project's.
func TestStoragePoolUsedByConfined(t *testing.T) {
	d, _ := withImage(t)
	if r := d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "p1", ProjectPut: api.ProjectPut{Config: map[string]string{"features.images": "false"}}}); r.Status != 201 {
		t.Fatalf("create project: %d %s", r.Status, r.Raw)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", createBody("theirs", nil, nil)))
	mustSucceed(t, d, d.Do("POST", "/1.0/instances?project=p1", createBody("mine", nil, nil)))
	t.Cleanup(func() { wait(t, d, d.Do("DELETE", "/1.0/instances/mine?project=p1&force=true", nil)) })
	as, _ := restrictedClient(t, d, "p1")

	const mine, theirs = "/1.0/instances/mine?project=p1", "/1.0/instances/theirs"
	var admin api.StoragePool
	d.Do("GET", "/1.0/storage-pools/default", nil).Metadata(t, &admin)
	for _, want := range []string{mine, theirs, "/1.0/profiles/default"} {
		if !slices.Contains(admin.UsedBy, want) {
			t.Fatalf("admin's used_by lacks %s: %v", want, admin.UsedBy)
		}
	}

	check := func(what string, p api.StoragePool) {
		t.Helper()
		if !slices.Contains(p.UsedBy, mine) {
			t.Errorf("%s: the confined caller's own instance is missing: %v", what, p.UsedBy)
		}
		for _, u := range p.UsedBy {
			if !strings.HasSuffix(u, "?project=p1") {
				t.Errorf("%s: the confined caller sees %s of another project", what, u)
			}
		}
		if len(p.Config) != 0 {
			t.Errorf("%s: the confined caller sees the pool config %v", what, p.Config)
		}
	}
	res := as("GET", "/1.0/storage-pools/default", nil)
	if res.Status != 200 {
		t.Fatalf("confined GET of the pool: %d %s", res.Status, res.Raw)
	}
	var p api.StoragePool
	res.Metadata(t, &p)
	check("GET by name", p)
	var list []api.StoragePool
	as("GET", "/1.0/storage-pools?recursion=1", nil).Metadata(t, &list)
	if len(list) != 1 {
		t.Fatalf("confined pool list: %+v", list)
	}
	check("recursion=1", list[0])
}
