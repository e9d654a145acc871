package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// writeTinyImage writes a unified image of a metadata.yaml and an almost
// empty rootfs/ to dir and returns its path.
func writeTinyImage(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "tiny.tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, e := range []struct {
		hdr  tar.Header
		body string
	}{
		{tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644}, "architecture: x86_64\nproperties:\n  description: tiny\n"},
		{tar.Header{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "rootfs/marker", Typeflag: tar.TypeReg, Mode: 0o644}, "tiny"},
	} {
		e.hdr.Size = int64(len(e.body))
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestImageImportPublic: `image import --public` makes an image an
// untrusted HTTPS caller (no client certificate) lists and reads, while
// an image imported without it stays hidden from that caller.
func TestImageImportPublic(t *testing.T) {
	path, fp := testdaemon.BusyboxImage(t)
	c := newCLI(t)
	addr := c.enableHTTPS()
	if _, errOut, code := c.run("image", "import", path, "--public", "--alias", "pub"); code != 0 {
		t.Fatalf("image import --public: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := c.run("image", "import", writeTinyImage(t, t.TempDir()), "--alias", "priv"); code != 0 {
		t.Fatalf("image import: exit %d, stderr %q", code, errOut)
	}
	var aliases []api.ImageAlias
	if err := json.Unmarshal([]byte(c.ok("image", "alias", "list", "--format", "json")), &aliases); err != nil || len(aliases) != 2 {
		t.Fatalf("alias list: %+v %v", aliases, err)
	}
	privFP := aliases[slices.IndexFunc(aliases, func(a api.ImageAlias) bool { return a.Name == "priv" })].Target

	rows := csvRows(t, c, "image", "list", "--format", "csv")
	public := map[string]string{}
	for _, r := range rows {
		public[r[0]] = r[2]
	}
	if public["pub"] != "YES" || public["priv"] != "NO" {
		t.Fatalf("image list PUBLIC column: %q", rows)
	}

	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(p string) testdaemon.Result {
		return testdaemon.DoWith(t, anon, "GET", "https://"+addr+p, nil, nil)
	}
	var list []string
	get("/1.0/images").Metadata(t, &list)
	if !slices.Equal(list, []string{"/1.0/images/" + fp}) {
		t.Fatalf("untrusted image list: %v (want only the public %s)", list, fp)
	}
	var img api.Image
	if r := get("/1.0/images/" + fp); r.Status != 200 {
		t.Fatalf("untrusted GET of the public image: %d %s", r.Status, r.Raw)
	} else if r.Metadata(t, &img); !img.Public || img.Fingerprint != fp {
		t.Fatalf("public image as seen untrusted: %+v", img)
	}
	if r := get("/1.0/images/" + privFP); r.Status != 404 {
		t.Fatalf("untrusted GET of the private image: %d %s", r.Status, r.Raw)
	}
	if r := get("/1.0/images/aliases/priv"); r.Status != 404 {
		t.Fatalf("untrusted GET of the private image's alias: %d %s", r.Status, r.Raw)
	}
}

// TestImageAliasRename: `image alias rename` moves the alias to its new
// name with the same target; a taken or missing name is an error that
// changes nothing.
func TestImageAliasRename(t *testing.T) {
	c, fp := imageCLI(t)
	c.ok("image", "alias", "create", "other", fp)
	c.errs("already exists", "image", "alias", "rename", "bb", "other")
	c.errs("not found", "image", "alias", "rename", "nosuch", "x")
	c.errs("Invalid alias name", "image", "alias", "rename", "bb", "a/b")
	if out := c.ok("image", "alias", "rename", "bb", "renamed"); out != "" {
		t.Fatalf("alias rename printed %q", out)
	}
	var aliases []api.ImageAlias
	if err := json.Unmarshal([]byte(c.ok("image", "alias", "list", "--format", "json")), &aliases); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, a := range aliases {
		names = append(names, a.Name)
		if a.Target != fp {
			t.Errorf("alias %s targets %s, want %s", a.Name, a.Target, fp)
		}
	}
	if !slices.Equal(names, []string{"other", "renamed"}) {
		t.Fatalf("aliases after rename: %v", names)
	}
	c.errs("not found", "image", "show", "bb")
	c.ok("image", "show", "renamed")
	c.ok("image", "alias", "mv", "renamed", "bb")
	c.ok("image", "show", "bb")
}
