package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// writeTarball writes a gzipped tar of hdrs (regular files get body "x")
// with a metadata.yaml first, readable by any uid.
func writeTarball(t *testing.T, dir, name string, hdrs ...tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	meta := "architecture: x86_64\ncreation_date: 1700000000\n"
	tw.WriteHeader(&tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(meta))})
	tw.Write([]byte(meta))
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	gz.Close()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// withExtraEntries copies the unified tarball src to dst with more
// entries appended (a later entry replaces an earlier one of the same name).
func withExtraEntries(t *testing.T, src, dst string, extra ...tar.Header) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range extra {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImageEscapeRefused: a non-admin (a per-user socket user) uploading
// tarballs built to write or chmod host files through symlinks gets a 400
// naming the entry, and the host directory they aim at is untouched; a
// real image with relative and absolute symlinks and a hard link still
// imports and runs.
func TestImageEscapeRefused(t *testing.T) {
	testdaemon.RequireRoot(t)
	gid := ensureUserGroup(t)
	img, _ := testdaemon.BusyboxImage(t)
	d := testdaemon.Start(t, "--user-group", userGroup)
	const alice = "65534"
	t.Cleanup(func() {
		var names []string
		d.Do("GET", "/1.0/instances?project=user-"+alice, nil).Metadata(t, &names)
		for _, n := range names {
			wait(t, d, d.Do("DELETE", n+"&force=true", nil))
		}
	})

	victim := filepath.Join(t.TempDir(), "victim")
	secret := filepath.Join(victim, "secret")
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(victim, 0o700)
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	untouched := func(what string) {
		t.Helper()
		fi, err := os.Lstat(victim)
		if err != nil || fi.Mode() != os.ModeDir|0o700 {
			t.Fatalf("%s: victim directory mode is now %v (%v)", what, fi.Mode(), err)
		}
		entries, _ := os.ReadDir(victim)
		if len(entries) != 1 {
			t.Fatalf("%s: victim directory holds %v", what, entries)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(secret, &st); err != nil || st.Nlink != 1 || st.Mode&0o7777 != 0o600 || st.Uid != 0 {
			t.Fatalf("%s: victim file: %v, %d links, mode %o, uid %d", what, err, st.Nlink, st.Mode, st.Uid)
		}
		if b, _ := os.ReadFile(secret); string(b) != "host secret\n" {
			t.Fatalf("%s: victim file content %q", what, b)
		}
	}

	// Tarballs the user can read.
	dir, err := os.MkdirTemp("", "moat-escape-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	root := tar.Header{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755}
	attacks := map[string]struct {
		hdrs []tar.Header
		want string
	}{
		"reviewer": {[]tar.Header{root,
			{Name: "rootfs/a", Typeflag: tar.TypeSymlink, Linkname: victim},
			{Name: "rootfs/a/", Typeflag: tar.TypeDir, Mode: 0o777},
			{Name: "rootfs/a/evil", Typeflag: tar.TypeReg, Mode: 0o4755},
		}, `"rootfs/a"`},
		"file-over-symlink": {[]tar.Header{root,
			{Name: "rootfs/s", Typeflag: tar.TypeSymlink, Linkname: secret},
			{Name: "rootfs/s", Typeflag: tar.TypeReg, Mode: 0o644},
		}, `"rootfs/s"`},
		"chain": {[]tar.Header{root,
			{Name: "rootfs/a", Typeflag: tar.TypeSymlink, Linkname: "b"},
			{Name: "rootfs/b", Typeflag: tar.TypeSymlink, Linkname: victim},
			{Name: "rootfs/a/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		}, `"rootfs/a/evil"`},
		"hardlink-via-symlink": {[]tar.Header{root,
			{Name: "rootfs/d", Typeflag: tar.TypeSymlink, Linkname: victim},
			{Name: "rootfs/shadow", Typeflag: tar.TypeLink, Linkname: "rootfs/d/secret"},
		}, `hard link "rootfs/shadow"`},
		"hardlink-absolute": {[]tar.Header{root,
			{Name: "rootfs/shadow", Typeflag: tar.TypeLink, Linkname: secret},
		}, `hard link "rootfs/shadow"`},
	}
	for name, a := range attacks {
		p := writeTarball(t, dir, name+".tar.gz", a.hdrs...)
		env, err := userCall(t, d, alice, gid, "POST", "/1.0/images", "@"+p)
		if err != nil {
			t.Fatal(err)
		}
		if env.ErrorCode != 400 || !strings.Contains(env.Error, a.want) {
			t.Errorf("%s: %d %q, want 400 naming %s", name, env.ErrorCode, env.Error, a.want)
		}
		untouched(name)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.Dir, "images")); len(entries) != 0 {
		t.Fatalf("refused uploads left %v", entries)
	}
	env, _ := userCall(t, d, alice, gid, "GET", "/1.0/images", "")
	var list []string
	_ = json.Unmarshal(env.Metadata, &list)
	if len(list) != 0 {
		t.Fatalf("refused uploads are listed: %v", list)
	}

	// The legitimate path: the busybox image (absolute applet symlinks
	// such as sbin/init -> /bin/busybox) with bin/ls replaced by a
	// relative symlink and a hard link to busybox in a new directory.
	good := filepath.Join(dir, "good.tar.gz")
	withExtraEntries(t, img, good,
		tar.Header{Name: "rootfs/bin/ls", Typeflag: tar.TypeSymlink, Linkname: "busybox"},
		tar.Header{Name: "rootfs/usr/local/bin/echo", Typeflag: tar.TypeLink, Linkname: "rootfs/bin/busybox"},
	)
	op := userOp(t, d, alice, gid, "POST", "/1.0/images", "@"+good)
	if op.Status != "Success" {
		t.Fatalf("legitimate upload: %s %s", op.Status, op.Err)
	}
	fp, _ := op.Metadata["fingerprint"].(string)
	op = userOp(t, d, alice, gid, "POST", "/1.0/instances",
		`{"name":"c1","source":{"type":"image","fingerprint":"`+fp+`"},"start":true}`)
	if op.Status != "Success" {
		t.Fatalf("launch from the image: %s", op.Err)
	}
	op = userOp(t, d, alice, gid, "POST", "/1.0/instances/c1/exec",
		`{"command":["sh","-c","test \"$(readlink /bin/ls)\" = busybox && ls /bin/busybox && [ \"$(/usr/local/bin/echo hi)\" = hi ]"],"record-output":true}`)
	if op.Status != "Success" || op.Metadata["return"] != float64(0) {
		t.Fatalf("running the image's symlinked and hard-linked applets: %s %v %s", op.Status, op.Metadata["return"], op.Err)
	}
	untouched("legitimate upload")
}
