package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// splitImage re-packs a unified image as the two gzip'd tarballs of a
// split image: metadata.yaml (with properties.os set to osName, so the
// result differs from the unified image) and the rootfs/ tree at the top.
func splitImage(t testing.TB, unified, osName string) (meta, rootfs []byte) {
	t.Helper()
	f, err := os.Open(unified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var mbuf, rbuf bytes.Buffer
	mgz, rgz := gzip.NewWriter(&mbuf), gzip.NewWriter(&rbuf)
	mtw, rtw := tar.NewWriter(mgz), tar.NewWriter(rgz)
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch {
		case name == "metadata.yaml":
			body = []byte(strings.Replace(string(body), "os: busybox", "os: "+osName, 1))
			hdr.Size = int64(len(body))
			if err := mtw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			mtw.Write(body)
		case name == "rootfs" || strings.HasPrefix(name, "rootfs/"):
			// rootfs/ itself becomes "./", as in LXD's own rootfs tarballs.
			hdr.Name = "./" + strings.TrimPrefix(strings.TrimPrefix(name, "rootfs"), "/")
			if err := rtw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			rtw.Write(body)
		}
	}
	for _, c := range []io.Closer{mtw, rtw, mgz, rgz} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return mbuf.Bytes(), rbuf.Bytes()
}

// tarGz is a gzip'd tarball of one entry.
func tarGz(t testing.TB, hdr tar.Header, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	hdr.Size = int64(len(content))
	if err := tw.WriteHeader(&hdr); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tw, content)
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

type part struct {
	field, filename string
	data            []byte
}

// uploadSplit posts a multipart image upload as lxc image import META
// ROOTFS does.
func uploadSplit(t testing.TB, d *testdaemon.Daemon, parts []part) testdaemon.Result {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range parts {
		w, err := mw.CreateFormFile(p.field, p.filename)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/images", body.Bytes(),
		map[string]string{"Content-Type": mw.FormDataContentType()})
}

// imageFiles lists the image store's directory (staging dirs included).
func imageFiles(t testing.TB, d *testdaemon.Daemon) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(d.Dir, "images"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestSplitImageUpload: a metadata and a rootfs tarball in one multipart
// upload make one image whose fingerprint is the sha256 of the metadata
// bytes followed by the rootfs bytes; a missing, misplaced or corrupt
// part is refused and leaves nothing behind.
func TestSplitImageUpload(t *testing.T) {
	path, _ := testdaemon.BusyboxImage(t)
	d := testdaemon.Start(t)
	meta, rootfs := splitImage(t, path, "splitbox")

	// The refusals first, on an empty store.
	truncated := rootfs[:len(rootfs)/2]
	corrupt := append(append([]byte{}, rootfs[:64]...), bytes.Repeat([]byte{0x55}, 4096)...)
	noYAML := tarGz(t, tar.Header{Name: "templates/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	escape := tarGz(t, tar.Header{Name: "../../evil-split", Typeflag: tar.TypeReg, Mode: 0o644}, "x")
	refused := map[string][]part{
		"no rootfs part":      {{"metadata", "meta.tar.gz", meta}},
		"no metadata part":    {{"rootfs", "rootfs.tar.gz", rootfs}},
		"parts swapped":       {{"rootfs", "rootfs.tar.gz", rootfs}, {"metadata", "meta.tar.gz", meta}},
		"truncated rootfs":    {{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", truncated}},
		"corrupt rootfs":      {{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", corrupt}},
		"empty rootfs":        {{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", nil}},
		"no metadata.yaml":    {{"metadata", "meta.tar.gz", noYAML}, {"rootfs", "rootfs.tar.gz", rootfs}},
		"corrupt metadata":    {{"metadata", "meta.tar.gz", meta[:len(meta)/2]}, {"rootfs", "rootfs.tar.gz", rootfs}},
		"rootfs escapes root": {{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", escape}},
	}
	for name, parts := range refused {
		res := uploadSplit(t, d, parts)
		failed := res.Status >= 400 && res.Status < 500
		if res.Status == 202 {
			var op api.Operation
			res.Metadata(t, &op)
			w := d.Do("GET", "/1.0/operations/"+op.ID+"/wait?timeout=30", nil)
			w.Metadata(t, &op)
			failed = op.Status == "Failure"
		}
		if !failed {
			t.Errorf("%s: accepted (%d %s)", name, res.Status, res.Raw)
		}
		storeEmpty(t, d, name+": refused upload")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d.Dir), "evil-split")); err == nil {
		t.Fatal("a rootfs entry escaped the image directory")
	}

	// The good upload.
	sum := sha256.Sum256(append(append([]byte{}, meta...), rootfs...))
	want := hex.EncodeToString(sum[:])
	op := mustSucceed(t, d, uploadSplit(t, d, []part{{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", rootfs}}))
	if fp := op.Metadata["fingerprint"]; fp != want {
		t.Fatalf("fingerprint %v, want sha256(metadata || rootfs) = %s", fp, want)
	}
	var img api.Image
	d.Do("GET", "/1.0/images/"+want, nil).Metadata(t, &img)
	if img.Fingerprint != want || img.Properties["os"] != "splitbox" || img.Size != int64(len(meta)+len(rootfs)) {
		t.Fatalf("image %+v", img)
	}
	if fi, err := os.Stat(filepath.Join(d.Dir, "images", want+".rootfs", "bin", "busybox")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("unpacked rootfs has no bin/busybox: %v", err)
	}
	if files := imageFiles(t, d); slices.ContainsFunc(files, func(n string) bool { return strings.HasPrefix(n, ".tmp-") }) {
		t.Fatalf("staging left behind: %v", files)
	}

	// It is a usable image: a container made from it runs.
	if res := d.Do("POST", "/1.0/images/aliases", map[string]string{"name": "split", "target": want}); res.Status != 201 {
		t.Fatalf("alias: %d %s", res.Status, res.Raw)
	}
	t.Cleanup(func() { wait(t, d, d.Do("DELETE", "/1.0/instances/s1?force=true", nil)) })
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "s1", "source": map[string]string{"type": "image", "alias": "split"}, "start": true,
	}))
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/s1/state", nil).Metadata(t, &st)
	if st.Status != "Running" {
		t.Fatalf("container from the split image: %+v", st)
	}
}

// TestLXCClientSplitImageImport: the real "lxc image import META ROOTFS"
// against moatd gives the fingerprint LXD would, and lxc list's
// server-side filter (status=...) answers like LXD.
func TestLXCClientSplitImageImport(t *testing.T) {
	path, _ := testdaemon.BusyboxImage(t)
	d := testdaemon.Start(t)
	lxc := newLXC(t, d)
	meta, rootfs := splitImage(t, path, "splitbox")
	dir := t.TempDir()
	mpath, rpath := filepath.Join(dir, "meta.tar.gz"), filepath.Join(dir, "rootfs.tar.gz")
	if err := os.WriteFile(mpath, meta, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rpath, rootfs, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append(append([]byte{}, meta...), rootfs...))
	want := hex.EncodeToString(sum[:])

	lxc.run("image", "import", mpath, rpath, "--alias", "split")
	if out := lxc.run("image", "info", "split"); !strings.Contains(out, "Fingerprint: "+want) || !strings.Contains(out, "os: splitbox") {
		t.Fatalf("lxc image info split (want fingerprint %s):\n%s", want, out)
	}
	// A truncated rootfs is refused by the server and leaves nothing.
	bad := filepath.Join(dir, "truncated.tar.gz")
	if err := os.WriteFile(bad, rootfs[:len(rootfs)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := lxc.cmd("image", "import", mpath, bad, "--alias", "broken").CombinedOutput(); err == nil {
		t.Fatalf("lxc image import with a truncated rootfs succeeded:\n%s", out)
	}
	if out := lxc.run("image", "list", "--format=csv", "-c", "lf"); strings.Contains(out, "broken") || strings.Count(out, "\n") != 1 {
		t.Fatalf("lxc image list after a refused import:\n%s", out)
	}

	t.Cleanup(func() { lxc.cmd("delete", "-f", "r1", "s1").Run() })
	lxc.run("launch", "split", "r1")
	lxc.run("init", "split", "s1")
	if out := lxc.run("list", "status=running", "--format=csv", "-c", "n"); strings.TrimSpace(out) != "r1" {
		t.Fatalf("lxc list status=running:\n%s", out)
	}
	if out := lxc.run("list", "status=stopped", "--format=csv", "-c", "n"); strings.TrimSpace(out) != "s1" {
		t.Fatalf("lxc list status=stopped:\n%s", out)
	}
	// The client filters again, so check that the server got the filter
	// (and answered it) rather than the client doing all the work.
	audit, err := os.ReadFile(filepath.Join(d.Dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var filters []string
	for _, line := range strings.Split(strings.TrimSpace(string(audit)), "\n") {
		var e struct {
			Method, Path, Query string
			Status              int
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Method != "GET" || e.Path != "/1.0/instances" {
			continue
		}
		if q, err := url.ParseQuery(e.Query); err == nil && q.Get("filter") != "" && e.Status == 200 {
			filters = append(filters, q.Get("filter"))
		}
	}
	if !slices.Contains(filters, "status eq running") || !slices.Contains(filters, "status eq stopped") {
		t.Fatalf("lxc list did not send its filters to the server; filtered lists: %q", filters)
	}
}
