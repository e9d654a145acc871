package integration

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/moat/moat/api"
)

// TestVolatileKeysCannotBeRemoved: PATCH with an empty value removes a
// key; for volatile keys (the image an instance's root filesystem is made
// from, its ID map) that is refused like setting them, and nothing changes.
// Unsetting a user key the same way works.
func TestVolatileKeysCannotBeRemoved(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "v1", map[string]string{"user.a": "1"})
	var before api.Instance
	d.Do("GET", "/1.0/instances/v1", nil).Metadata(t, &before)
	for _, k := range []string{"volatile.base_image", "volatile.uuid", "volatile.idmap.base", "volatile.idmap.next"} {
		if before.Config[k] == "" {
			t.Fatalf("%s not set: %v", k, before.Config)
		}
		r := d.Do("PATCH", "/1.0/instances/v1", map[string]any{"config": map[string]string{k: ""}})
		if r.Status != 400 || !strings.Contains(r.Body.Error, k) {
			t.Fatalf("removing %s: %d %q", k, r.Status, r.Body.Error)
		}
	}
	var after api.Instance
	d.Do("GET", "/1.0/instances/v1", nil).Metadata(t, &after)
	for k, v := range before.Config {
		if after.Config[k] != v {
			t.Fatalf("%s changed from %q to %q by refused requests", k, v, after.Config[k])
		}
	}
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/v1", map[string]any{"config": map[string]string{"user.a": ""}}))
	after = api.Instance{} // decoding into a filled map would keep old keys
	d.Do("GET", "/1.0/instances/v1", nil).Metadata(t, &after)
	if _, ok := after.Config["user.a"]; ok {
		t.Fatal("user.a was not unset")
	}
	// A PUT that does not echo the volatile keys keeps them.
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/v1", map[string]any{"config": map[string]string{}, "profiles": []string{"default"}, "devices": map[string]any{}}))
	after = api.Instance{}
	d.Do("GET", "/1.0/instances/v1", nil).Metadata(t, &after)
	if after.Config["volatile.base_image"] != before.Config["volatile.base_image"] {
		t.Fatalf("PUT lost volatile.base_image: %v", after.Config)
	}
}

// TestRunningIDMapBlockStays: on a running isolated container, a change
// that would move it off its host ID block (another size that does not
// fit in place, leaving isolation, a fixed base, privilege) is refused
// with a 400 naming the instance, so the block cannot be handed to
// another container while this one runs with it. Stopped, the same change
// is accepted.
func TestRunningIDMapBlockStays(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "blk", nil)
	launch(t, d, "next", nil) // sits right after blk's block
	var before api.Instance
	d.Do("GET", "/1.0/instances/blk", nil).Metadata(t, &before)
	for _, cfg := range []map[string]string{
		{"security.idmap.isolated": "false"},
		{"security.idmap.size": "200000"},
		{"security.privileged": "true"},
	} {
		r := d.Do("PATCH", "/1.0/instances/blk", map[string]any{"config": cfg})
		if r.Status != 400 || !strings.Contains(r.Body.Error, "stopped first") || !strings.Contains(r.Body.Error, `"blk"`) {
			t.Fatalf("%v on a running container: %d %q", cfg, r.Status, r.Body.Error)
		}
	}
	var after api.Instance
	d.Do("GET", "/1.0/instances/blk", nil).Metadata(t, &after)
	if after.Config["volatile.idmap.base"] != before.Config["volatile.idmap.base"] || after.Config["security.idmap.size"] != "" {
		t.Fatalf("refused changes stored: %v", after.Config)
	}
	// A change that leaves the block alone still applies to the running
	// container.
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/blk", map[string]any{"config": map[string]string{"user.x": "1"}}))
	// A profile change that would move it is refused the same way.
	r := d.Do("PATCH", "/1.0/profiles/default", map[string]any{"config": map[string]string{"security.idmap.isolated": "false"}})
	if r.Status != 400 || !strings.Contains(r.Body.Error, "stopped first") {
		t.Fatalf("profile change moving running blocks: %d %q", r.Status, r.Body.Error)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/blk/state", map[string]any{"action": "stop", "force": true}))
	mustSucceed(t, d, d.Do("PATCH", "/1.0/instances/blk", map[string]any{"config": map[string]string{"security.idmap.size": "200000"}}))
	after = api.Instance{}
	d.Do("GET", "/1.0/instances/blk", nil).Metadata(t, &after)
	if after.Config["volatile.idmap.base"] == before.Config["volatile.idmap.base"] {
		t.Fatalf("a block that no longer fits stayed: %v", after.Config)
	}
}

// TestCreateInputErrors: an ambiguous image fingerprint prefix is a 400
// saying so (not "not found"), and a profile listed twice is a 400 on
// create, PUT and PATCH; none of them changes anything.
func TestCreateInputErrors(t *testing.T) {
	d, fp := withImage(t)
	// A second image whose fingerprint starts with the same hex digit, so
	// that digit alone is an ambiguous prefix.
	var second []byte
	for i := 0; second == nil; i++ {
		tb := badTarball(t, []tar.Header{
			{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: fmt.Sprintf("rootfs/f%d", i), Typeflag: tar.TypeReg, Mode: 0o644},
		}, true)
		if sum := sha256.Sum256(tb); hex.EncodeToString(sum[:])[0] == fp[0] {
			second = tb
		}
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/images", second))
	r := d.Do("POST", "/1.0/instances", map[string]any{"name": "x", "source": map[string]string{"type": "image", "fingerprint": fp[:1]}})
	if r.Status != 400 || !strings.Contains(r.Body.Error, "ambiguous") {
		t.Fatalf("ambiguous fingerprint prefix: %d %q", r.Status, r.Body.Error)
	}
	r = d.Do("POST", "/1.0/instances", map[string]any{"name": "x", "source": map[string]string{"type": "image", "fingerprint": "zz"}})
	if r.Status != 404 {
		t.Fatalf("unknown fingerprint: %d %q", r.Status, r.Body.Error)
	}
	r = d.Do("POST", "/1.0/instances", map[string]any{"name": "x", "source": map[string]string{"type": "image", "alias": "bb"}, "profiles": []string{"default", "default"}})
	if r.Status != 400 || !strings.Contains(r.Body.Error, "twice") {
		t.Fatalf("create with a profile twice: %d %q", r.Status, r.Body.Error)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "y", "source": map[string]string{"type": "image", "alias": "bb"}}))
	for _, m := range []string{"PUT", "PATCH"} {
		r = d.Do(m, "/1.0/instances/y", map[string]any{"profiles": []string{"default", "default"}, "config": map[string]string{}, "devices": map[string]any{}})
		if r.Status != 400 || !strings.Contains(r.Body.Error, "twice") {
			t.Fatalf("%s with a profile twice: %d %q", m, r.Status, r.Body.Error)
		}
	}
	var in api.Instance
	d.Do("GET", "/1.0/instances/y", nil).Metadata(t, &in)
	if len(in.Profiles) != 1 {
		t.Fatalf("profiles after refused updates: %v", in.Profiles)
	}
	var names []string
	d.Do("GET", "/1.0/instances", nil).Metadata(t, &names)
	if len(names) != 1 {
		t.Fatalf("instances: %v", names)
	}
}
