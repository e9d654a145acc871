package integration

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// TestImagePublicFlagForUntrusted: an untrusted HTTPS caller lists only
// public images and gets a 404 for a private image by fingerprint and by
// alias; once the image is made public it sees it.
func TestImagePublicFlagForUntrusted(t *testing.T) {
	d, fp := withImage(t)
	base, _ := listenHTTPS(t, d)
	anon := tlsClient(nil)
	as := func(path string) testdaemon.Result {
		return testdaemon.DoWith(t, anon, "GET", base+path, nil, nil)
	}
	if auth, _ := authOf(t, anon, base); auth != "untrusted" {
		t.Fatalf("caller without a certificate is %q", auth)
	}
	var list []string
	as("/1.0/images").Metadata(t, &list)
	if len(list) != 0 {
		t.Fatalf("untrusted list of private images: %v", list)
	}
	if r := as("/1.0/images/" + fp); r.Status != 404 {
		t.Fatalf("untrusted GET of a private image: %d %s", r.Status, r.Raw)
	}
	if r := as("/1.0/images/aliases/bb"); r.Status != 404 {
		t.Fatalf("untrusted GET of a private image's alias: %d %s", r.Status, r.Raw)
	}
	// The trusted socket sees it all along.
	d.Do("GET", "/1.0/images", nil).Metadata(t, &list)
	if len(list) != 1 {
		t.Fatalf("admin list: %v", list)
	}

	if r := d.Do("PATCH", "/1.0/images/"+fp, map[string]any{"public": true}); r.Status != 200 {
		t.Fatalf("PATCH public: %d %s", r.Status, r.Raw)
	}
	as("/1.0/images").Metadata(t, &list)
	if len(list) != 1 || !strings.HasSuffix(list[0], fp) {
		t.Fatalf("untrusted list of a public image: %v", list)
	}
	var img api.Image
	if r := as("/1.0/images/" + fp); r.Status != 200 {
		t.Fatalf("untrusted GET of a public image: %d %s", r.Status, r.Raw)
	} else {
		r.Metadata(t, &img)
	}
	if img.Fingerprint != fp || !img.Public {
		t.Fatalf("public image as seen untrusted: %+v", img)
	}
	if r := as("/1.0/images/aliases/bb"); r.Status != 200 {
		t.Fatalf("untrusted GET of a public image's alias: %d %s", r.Status, r.Raw)
	}
	// And private again: hidden again.
	if r := d.Do("PATCH", "/1.0/images/"+fp, map[string]any{"public": false}); r.Status != 200 {
		t.Fatalf("PATCH private: %d %s", r.Status, r.Raw)
	}
	if r := as("/1.0/images/" + fp); r.Status != 404 {
		t.Fatalf("untrusted GET after making it private: %d", r.Status)
	}
}

// TestImagePutPatch: PUT replaces the editable fields, PATCH merges them,
// GET shows the result, and bad input is a 400 that changes nothing.
func TestImagePutPatch(t *testing.T) {
	d, fp := withImage(t)
	get := func() api.Image {
		var img api.Image
		d.Do("GET", "/1.0/images/"+fp, nil).Metadata(t, &img)
		return img
	}
	orig := get()
	if r := d.Do("PATCH", "/1.0/images/"+fp, map[string]any{"properties": map[string]string{"gap": "one"}}); r.Status != 200 {
		t.Fatalf("PATCH: %d %s", r.Status, r.Raw)
	}
	img := get()
	if img.Properties["gap"] != "one" || len(img.Properties) != len(orig.Properties)+1 {
		t.Fatalf("PATCH did not merge: %v (was %v)", img.Properties, orig.Properties)
	}
	if r := d.Do("PUT", "/1.0/images/"+fp, map[string]any{"properties": map[string]string{"only": "this"}, "public": true, "auto_update": false}); r.Status != 200 {
		t.Fatalf("PUT: %d %s", r.Status, r.Raw)
	}
	img = get()
	if len(img.Properties) != 1 || img.Properties["only"] != "this" || !img.Public {
		t.Fatalf("PUT did not replace: %+v", img.ImagePut)
	}
	for name, body := range map[string]string{
		"not json":       "{",
		"public string":  `{"public":"yes"}`,
		"properties int": `{"properties":3}`,
		"empty key":      `{"properties":{"":"x"}}`,
	} {
		for _, m := range []string{"PUT", "PATCH"} {
			if r := d.Do(m, "/1.0/images/"+fp, body); r.Status != 400 {
				t.Errorf("%s with %s: %d %s", m, name, r.Status, r.Raw)
			}
		}
	}
	if after := get(); !slices.Equal(keys(after.Properties), keys(img.Properties)) || after.Public != img.Public {
		t.Fatalf("refused updates changed the image: %+v", after.ImagePut)
	}
	if r := d.Do("PATCH", "/1.0/images/"+strings.Repeat("0", 64), map[string]any{"public": true}); r.Status != 404 {
		t.Fatalf("PATCH of a missing image: %d", r.Status)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestStoragePoolsAPI: the default pool through the list (both
// recursions) and by name; creating or changing pools is refused and
// changes nothing.
func TestStoragePoolsAPI(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "sp1", nil)
	var names []string
	d.Do("GET", "/1.0/storage-pools", nil).Metadata(t, &names)
	if !slices.Equal(names, []string{"/1.0/storage-pools/default"}) {
		t.Fatalf("pools: %v", names)
	}
	var pools []api.StoragePool
	d.Do("GET", "/1.0/storage-pools?recursion=1", nil).Metadata(t, &pools)
	if len(pools) != 1 || pools[0].Name != "default" || pools[0].Driver != "dir" {
		t.Fatalf("pools?recursion=1: %+v", pools)
	}
	var p api.StoragePool
	res := d.Do("GET", "/1.0/storage-pools/default", nil)
	res.Metadata(t, &p)
	if res.Status != 200 || p.Name != "default" || p.Driver != "dir" || p.Config["source"] == "" {
		t.Fatalf("default pool: %d %+v", res.Status, p)
	}
	if _, err := os.Stat(p.Config["source"]); err != nil {
		t.Fatalf("pool source: %v", err)
	}
	if !slices.ContainsFunc(p.UsedBy, func(u string) bool { return strings.HasSuffix(u, "/instances/sp1") }) {
		t.Fatalf("used_by lacks sp1: %v", p.UsedBy)
	}
	if r := d.Do("GET", "/1.0/storage-pools/nope", nil); r.Status != 404 {
		t.Fatalf("missing pool: %d", r.Status)
	}

	r := d.Do("POST", "/1.0/storage-pools", map[string]any{"name": "p2", "driver": "dir"})
	if r.Status < 400 || r.Body.Error == "" {
		t.Fatalf("POST a pool: %d %s", r.Status, r.Raw)
	}
	t.Logf("POST: %d %s", r.Status, r.Body.Error)
	r = d.Do("PUT", "/1.0/storage-pools/default", map[string]any{"config": map[string]string{"source": "/tmp"}})
	if r.Status < 400 {
		t.Fatalf("PUT the default pool: %d %s", r.Status, r.Raw)
	}
	t.Logf("PUT: %d %s", r.Status, r.Body.Error)
	var after api.StoragePool
	d.Do("GET", "/1.0/storage-pools/default", nil).Metadata(t, &after)
	d.Do("GET", "/1.0/storage-pools", nil).Metadata(t, &names)
	if after.Config["source"] != p.Config["source"] || len(names) != 1 {
		t.Fatalf("refused pool changes applied: %v %v", after.Config, names)
	}
}
