package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// tinyImage is a unified image of metadata.yaml (with extra appended to
// it, e.g. a properties block) and a rootfs/ holding one file named by
// marker, so that different markers give different fingerprints. With
// meta false it has no metadata.yaml at all.
func tinyImage(t testing.TB, meta bool, extra, marker string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(h tar.Header, body string) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if meta {
		add(tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644}, "architecture: x86_64\ncreation_date: 1700000000\n"+extra)
	}
	add(tar.Header{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(tar.Header{Name: "rootfs/marker", Typeflag: tar.TypeReg, Mode: 0o644}, marker)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// upload posts a unified image with headers and waits for the operation.
func upload(t testing.TB, d *testdaemon.Daemon, body []byte, hdr map[string]string) testdaemon.Result {
	t.Helper()
	return testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/images", body, hdr)
}

// uploaded posts a unified image that must succeed, returning its
// fingerprint.
func uploaded(t testing.TB, d *testdaemon.Daemon, path string, body []byte, hdr map[string]string) string {
	t.Helper()
	op := mustSucceed(t, d, testdaemon.DoWith(t, d.HTTPClient(), "POST", path, body, hdr))
	return op.Metadata["fingerprint"].(string)
}

// storeEmpty fails the test when any image is listed (in any project) or
// any file is in the image directory.
func storeEmpty(t testing.TB, d *testdaemon.Daemon, what string) {
	t.Helper()
	var list []string
	d.Do("GET", "/1.0/images?all-projects=true", nil).Metadata(t, &list)
	if len(list) != 0 {
		t.Fatalf("%s: images listed: %v", what, list)
	}
	if files := imageFiles(t, d); len(files) != 0 {
		t.Fatalf("%s: files left in the image store: %v", what, files)
	}
}

// TestImageUploadPropertiesChecked: property names PUT and PATCH refuse
// are refused on upload too, from the X-LXD-properties header and from
// metadata.yaml, unified and split, with a 400 naming the property and
// where it came from, and nothing left behind; good properties from
// both land on the image, the header's winning.
func TestImageUploadPropertiesChecked(t *testing.T) {
	d := testdaemon.Start(t)
	good := tinyImage(t, true, "properties:\n  os: tiny\n  release: one\n", "good")
	badMeta := tinyImage(t, true, "properties:\n  os: tiny\n  \"bad\\nname\": x\n", "badmeta")
	emptyMeta := tinyImage(t, true, "properties:\n  \"\": x\n", "emptymeta")
	cases := []struct {
		name, header string
		body         []byte
		want         []string
	}{
		{"header newline", url.Values{"a\nb": {"x"}}.Encode(), good, []string{`"a\nb"`, "X-LXD-properties"}},
		{"header empty", "=x", good, []string{`""`, "X-LXD-properties"}},
		{"header NUL", "a%00b=x", good, []string{`"a\x00b"`, "X-LXD-properties"}},
		{"metadata newline", "", badMeta, []string{`"bad\nname"`, "metadata.yaml"}},
		{"metadata empty", "", emptyMeta, []string{`""`, "metadata.yaml"}},
	}
	for _, c := range cases {
		hdr := map[string]string{}
		if c.header != "" {
			hdr["X-LXD-properties"] = c.header
		}
		res := upload(t, d, c.body, hdr)
		if res.Status != 400 {
			t.Fatalf("%s: %d %s", c.name, res.Status, res.Raw)
		}
		for _, w := range c.want {
			if !strings.Contains(res.Body.Error, w) {
				t.Errorf("%s: error %q does not name %s", c.name, res.Body.Error, w)
			}
		}
		storeEmpty(t, d, c.name)
	}
	// The split form reads the same metadata.yaml.
	meta := tarGz(t, tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644},
		"architecture: x86_64\nproperties:\n  \"bad\\nname\": x\n")
	rootfs := tarGz(t, tar.Header{Name: "./marker", Typeflag: tar.TypeReg, Mode: 0o644}, "split")
	res := uploadSplit(t, d, []part{{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", rootfs}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, `"bad\nname"`) || !strings.Contains(res.Body.Error, "metadata.yaml") {
		t.Fatalf("split upload with a bad metadata.yaml property: %d %s", res.Status, res.Raw)
	}
	storeEmpty(t, d, "split with a bad property")

	fp := uploaded(t, d, "/1.0/images", good, map[string]string{"X-LXD-properties": "release=two&extra=yes"})
	var img api.Image
	d.Do("GET", "/1.0/images/"+fp, nil).Metadata(t, &img)
	if img.Properties["os"] != "tiny" || img.Properties["release"] != "two" || img.Properties["extra"] != "yes" {
		t.Fatalf("properties of the good upload: %v", img.Properties)
	}
}

// TestImageMissingMetadataRefused: an upload without metadata.yaml is a
// 400 that says what is missing, and leaves nothing.
func TestImageMissingMetadataRefused(t *testing.T) {
	d := testdaemon.Start(t)
	res := upload(t, d, tinyImage(t, false, "", "nometa"), nil)
	if res.Status != 400 || !strings.Contains(res.Body.Error, "metadata.yaml") {
		t.Fatalf("unified upload without metadata.yaml: %d %s", res.Status, res.Raw)
	}
	noYAML := tarGz(t, tar.Header{Name: "templates/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	rootfs := tarGz(t, tar.Header{Name: "./marker", Typeflag: tar.TypeReg, Mode: 0o644}, "split")
	res = uploadSplit(t, d, []part{{"metadata", "meta.tar.gz", noYAML}, {"rootfs", "rootfs.tar.gz", rootfs}})
	if res.Status != 400 || !strings.Contains(res.Body.Error, "metadata.yaml") {
		t.Fatalf("split upload without metadata.yaml: %d %s", res.Status, res.Raw)
	}
	storeEmpty(t, d, "uploads without metadata.yaml")
}

// TestSplitUploadCutOrOversized: a multipart upload that ends before its
// closing boundary is the client's fault (400, not 500), and a metadata
// part over the limit is refused naming the limit (413) instead of being
// cut short and read as something else; neither leaves anything.
func TestSplitUploadCutOrOversized(t *testing.T) {
	d := testdaemon.Start(t)
	meta := tarGz(t, tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644}, "architecture: x86_64\n")
	rootfs := tarGz(t, tar.Header{Name: "./marker", Typeflag: tar.TypeReg, Mode: 0o644}, "split")
	post := func(body []byte, ct string) testdaemon.Result {
		return testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/images", body, map[string]string{"Content-Type": ct})
	}

	// Both parts complete, the closing boundary missing.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []part{{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", rootfs}} {
		w, _ := mw.CreateFormFile(p.field, p.filename)
		w.Write(p.data)
	}
	res := post(body.Bytes(), mw.FormDataContentType())
	if res.Status != 400 || !strings.Contains(res.Body.Error, "ended before it was complete") {
		t.Fatalf("upload cut before the closing boundary: %d %s", res.Status, res.Raw)
	}
	storeEmpty(t, d, "cut upload")

	// A metadata part one byte over 64 MiB.
	body.Reset()
	mw = multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("metadata", "meta.tar.gz")
	w.Write(meta)
	w.Write(make([]byte, 64<<20+1-len(meta)))
	w, _ = mw.CreateFormFile("rootfs", "rootfs.tar.gz")
	w.Write(rootfs)
	mw.Close()
	res = post(body.Bytes(), mw.FormDataContentType())
	if res.Status != 413 || !strings.Contains(res.Body.Error, "64 MiB") || !strings.Contains(res.Body.Error, "metadata") {
		t.Fatalf("oversized metadata part: %d %s", res.Status, res.Raw)
	}
	storeEmpty(t, d, "oversized metadata part")

	// The same parts, whole, are a good image.
	mustSucceed(t, d, uploadSplit(t, d, []part{{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", rootfs}}))
}

// TestConcurrentDuplicateImageUpload: the same bytes uploaded at once to
// one project give one image and 409s, never a 500; to two projects,
// both succeed; the files are whole either way. Then one project deletes
// its image while the other keeps uploading the same bytes: every image
// still listed has its files.
func TestConcurrentDuplicateImageUpload(t *testing.T) {
	d := testdaemon.Start(t)
	if r := d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "other"}); r.Status != 201 {
		t.Fatalf("create project: %d %s", r.Status, r.Raw)
	}
	filesWhole := func(fp, what string) {
		t.Helper()
		for _, f := range []string{fp, fp + ".rootfs/marker"} {
			if _, err := os.Stat(filepath.Join(d.Dir, "images", f)); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		if files := imageFiles(t, d); slices.ContainsFunc(files, func(n string) bool { return strings.HasPrefix(n, ".tmp-") }) {
			t.Fatalf("%s: staging left: %v", what, files)
		}
	}
	run := func(n int, body []byte, path func(i int) string) []testdaemon.Result {
		var wg sync.WaitGroup
		start := make(chan struct{})
		out := make([]testdaemon.Result, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out[i] = testdaemon.DoWith(t, d.HTTPClient(), "POST", path(i), body, nil)
			}()
		}
		close(start)
		wg.Wait()
		return out
	}

	for round := range 8 {
		body := tinyImage(t, true, "", fmt.Sprint("same-", round))
		ok := 0
		var fp string
		for _, res := range run(4, body, func(int) string { return "/1.0/images" }) {
			switch res.Status {
			case 202:
				ok++
				fp = wait(t, d, res).Metadata["fingerprint"].(string)
			case 409:
			default:
				t.Fatalf("round %d: concurrent duplicate upload: %d %s", round, res.Status, res.Raw)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d uploads of the same bytes succeeded in one project", round, ok)
		}
		filesWhole(fp, "same project")
	}

	body := tinyImage(t, true, "", "two-projects")
	projects := []string{"/1.0/images", "/1.0/images?project=other"}
	var fp string
	for i, res := range run(2, body, func(i int) string { return projects[i] }) {
		if res.Status != 202 {
			t.Fatalf("upload to %s: %d %s", projects[i], res.Status, res.Raw)
		}
		fp = mustSucceed(t, d, res).Metadata["fingerprint"].(string)
	}
	filesWhole(fp, "two projects")

	// Delete in one project while the other uploads the same bytes.
	for round := range 8 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			wait(t, d, d.Do("DELETE", "/1.0/images/"+fp, nil))
		}()
		go func() {
			defer wg.Done()
			res := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/images?project=other", body, nil)
			if res.Status != 202 && res.Status != 409 {
				t.Errorf("round %d: upload during a delete: %d %s", round, res.Status, res.Raw)
			} else if res.Status == 202 {
				wait(t, d, res)
			}
		}()
		wg.Wait()
		var list []string
		d.Do("GET", "/1.0/images?project=other", nil).Metadata(t, &list)
		if len(list) != 1 {
			t.Fatalf("round %d: project other lists %v", round, list)
		}
		filesWhole(fp, fmt.Sprint("delete round ", round))
		// Put it back in default for the next round.
		mustSucceed(t, d, upload(t, d, body, nil))
	}
}

// TestImageConcurrentPatch: concurrent PATCHes each adding a property all
// land (none is lost to another's stale copy), and If-Match is checked
// against the stored image: the ETag from before a change is refused
// with 412 and changes nothing.
func TestImageConcurrentPatch(t *testing.T) {
	d := testdaemon.Start(t)
	fp := uploaded(t, d, "/1.0/images", tinyImage(t, true, "", "patch"), nil)
	const n = 16
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res := d.Do("PATCH", "/1.0/images/"+fp, map[string]any{"properties": map[string]string{fmt.Sprint("p", i): "set"}})
			if res.Status != 200 {
				t.Errorf("PATCH %d: %d %s", i, res.Status, res.Raw)
			}
		}()
	}
	close(start)
	wg.Wait()
	var img api.Image
	d.Do("GET", "/1.0/images/"+fp, nil).Metadata(t, &img)
	for i := range n {
		if img.Properties[fmt.Sprint("p", i)] != "set" {
			t.Errorf("property p%d lost: %v", i, img.Properties)
		}
	}

	etag := d.Do("GET", "/1.0/images/"+fp, nil).Header.Get("ETag")
	patch := func(tag string, props map[string]string) testdaemon.Result {
		return testdaemon.DoWith(t, d.HTTPClient(), "PATCH", "/1.0/images/"+fp, map[string]any{"properties": props}, map[string]string{"If-Match": tag})
	}
	if res := patch(etag, map[string]string{"first": "yes"}); res.Status != 200 {
		t.Fatalf("PATCH with the current ETag: %d %s", res.Status, res.Raw)
	}
	if res := patch(etag, map[string]string{"second": "yes"}); res.Status != 412 {
		t.Fatalf("PATCH with the ETag from before the change: %d %s", res.Status, res.Raw)
	}
	d.Do("GET", "/1.0/images/"+fp, nil).Metadata(t, &img)
	if img.Properties["first"] != "yes" || img.Properties["second"] != "" {
		t.Fatalf("after the refused PATCH: %v", img.Properties)
	}
}

// TestImageAliasEdit: PUT replaces an alias's target and description,
// PATCH changes only what it names, a stale If-Match or a missing target
// changes nothing, and rename moves the alias (refusing a taken or bad
// name).
func TestImageAliasEdit(t *testing.T) {
	d := testdaemon.Start(t)
	one := uploaded(t, d, "/1.0/images", tinyImage(t, true, "", "one"), nil)
	two := uploaded(t, d, "/1.0/images", tinyImage(t, true, "", "two"), nil)
	for name, target := range map[string]string{"a": one, "taken": two} {
		if r := d.Do("POST", "/1.0/images/aliases", map[string]string{"name": name, "target": target}); r.Status != 201 {
			t.Fatalf("alias %s: %d %s", name, r.Status, r.Raw)
		}
	}
	get := func(name string) (api.ImageAlias, testdaemon.Result) {
		var a api.ImageAlias
		r := d.Do("GET", "/1.0/images/aliases/"+name, nil)
		if r.Status == 200 {
			r.Metadata(t, &a)
		}
		return a, r
	}
	expect := func(name, target, desc, what string) {
		t.Helper()
		a, r := get(name)
		if r.Status != 200 || a.Target != target || a.Description != desc {
			t.Fatalf("%s: alias %s is %d %+v, want target %s description %q", what, name, r.Status, a, target, desc)
		}
	}

	if r := d.Do("PUT", "/1.0/images/aliases/a", map[string]string{"target": two, "description": "put"}); r.Status != 200 {
		t.Fatalf("PUT: %d %s", r.Status, r.Raw)
	}
	expect("a", two, "put", "after PUT")
	if r := d.Do("PATCH", "/1.0/images/aliases/a", map[string]string{"description": "patched"}); r.Status != 200 {
		t.Fatalf("PATCH description: %d %s", r.Status, r.Raw)
	}
	expect("a", two, "patched", "after PATCH of the description")
	if r := d.Do("PATCH", "/1.0/images/aliases/a", map[string]string{"target": one[:12]}); r.Status != 200 {
		t.Fatalf("PATCH target by prefix: %d %s", r.Status, r.Raw)
	}
	expect("a", one, "patched", "after PATCH of the target")

	for what, req := range map[string]testdaemon.Result{
		"PUT missing target":   d.Do("PUT", "/1.0/images/aliases/a", map[string]string{"target": strings.Repeat("0", 64), "description": "x"}),
		"PATCH missing target": d.Do("PATCH", "/1.0/images/aliases/a", map[string]string{"target": strings.Repeat("0", 64)}),
	} {
		if req.Status != 404 || !strings.Contains(req.Body.Error, strings.Repeat("0", 64)) {
			t.Errorf("%s: %d %s", what, req.Status, req.Raw)
		}
	}
	if r := d.Do("PATCH", "/1.0/images/aliases/a", `{"description":3}`); r.Status != 400 {
		t.Errorf("PATCH with a bad body: %d %s", r.Status, r.Raw)
	}
	_, r := get("a")
	etag := r.Header.Get("ETag")
	if r := testdaemon.DoWith(t, d.HTTPClient(), "PATCH", "/1.0/images/aliases/a", map[string]string{"description": "tagged"}, map[string]string{"If-Match": etag}); r.Status != 200 {
		t.Fatalf("PATCH with the current ETag: %d %s", r.Status, r.Raw)
	}
	if r := testdaemon.DoWith(t, d.HTTPClient(), "PUT", "/1.0/images/aliases/a", map[string]string{"target": two}, map[string]string{"If-Match": etag}); r.Status != 412 {
		t.Fatalf("PUT with a stale ETag: %d %s", r.Status, r.Raw)
	}
	expect("a", one, "tagged", "after the refused updates")

	// Rename.
	for name, want := range map[string]int{"taken": 409, "x/y": 400, "": 400} {
		if r := d.Do("POST", "/1.0/images/aliases/a", map[string]string{"name": name}); r.Status != want {
			t.Errorf("rename to %q: %d %s, want %d", name, r.Status, r.Raw, want)
		}
	}
	expect("a", one, "tagged", "after the refused renames")
	expect("taken", two, "", "the alias a refused rename aimed at")
	r = d.Do("POST", "/1.0/images/aliases/a", map[string]string{"name": "b"})
	if r.Status != 201 || r.Header.Get("Location") != "/1.0/images/aliases/b" {
		t.Fatalf("rename: %d %v %s", r.Status, r.Header, r.Raw)
	}
	if _, r := get("a"); r.Status != 404 {
		t.Fatalf("old name after rename: %d", r.Status)
	}
	expect("b", one, "tagged", "after rename")
	var img api.Image
	d.Do("GET", "/1.0/images/"+one, nil).Metadata(t, &img)
	if len(img.Aliases) != 1 || img.Aliases[0].Name != "b" {
		t.Fatalf("image aliases after rename: %+v", img.Aliases)
	}
	if r := d.Do("POST", "/1.0/images/aliases/nosuch", map[string]string{"name": "c"}); r.Status != 404 {
		t.Fatalf("rename of a missing alias: %d %s", r.Status, r.Raw)
	}
}
