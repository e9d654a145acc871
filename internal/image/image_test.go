package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// ent is one archive entry; body is the content of a regular file.
type ent struct {
	tar.Header
	body string
}

func dir(name string, mode int64) ent {
	return ent{Header: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}}
}
func reg(name, body string, mode int64) ent {
	return ent{Header: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}, body: body}
}
func sym(name, target string) ent {
	return ent{Header: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}
func hard(name, target string) ent {
	return ent{Header: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}}
}

const metaYAML = "architecture: x86_64\ncreation_date: 1700000000\n"

// tarball builds a gzipped tar of entries, with metadata.yaml first when
// withMeta.
func tarball(t *testing.T, withMeta bool, entries ...ent) []byte {
	t.Helper()
	if withMeta {
		entries = append([]ent{reg("metadata.yaml", metaYAML, 0o644)}, entries...)
	}
	return seedTar(t, true, entries...)
}

// victim is a host directory outside the store that attacks aim at.
type victim struct {
	dir, file string
}

func newVictim(t *testing.T) victim {
	t.Helper()
	v := victim{dir: filepath.Join(t.TempDir(), "victim")}
	v.file = filepath.Join(v.dir, "secret")
	if err := os.Mkdir(v.dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v.file, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// MkdirAll and WriteFile honour the umask; make the modes exact.
	os.Chmod(v.dir, 0o750)
	os.Chmod(v.file, 0o600)
	return v
}

// untouched fails the test if anything about the victim changed.
func (v victim) untouched(t *testing.T) {
	t.Helper()
	fi, err := os.Lstat(v.dir)
	if err != nil || fi.Mode() != os.ModeDir|0o750 {
		t.Fatalf("victim directory changed: %v %v", fi.Mode(), err)
	}
	var st syscall.Stat_t
	syscall.Lstat(v.dir, &st)
	if st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("victim directory owner changed to %d:%d", st.Uid, st.Gid)
	}
	entries, _ := os.ReadDir(v.dir)
	if len(entries) != 1 || entries[0].Name() != "secret" {
		t.Fatalf("victim directory holds %v", entries)
	}
	fi, err = os.Lstat(v.file)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("victim file changed: %v %v", fi, err)
	}
	syscall.Lstat(v.file, &st)
	if st.Nlink != 1 || st.Uid != 0 {
		t.Fatalf("victim file has %d links, owner %d", st.Nlink, st.Uid)
	}
	if b, _ := os.ReadFile(v.file); string(b) != "host secret\n" {
		t.Fatalf("victim file content changed: %q", b)
	}
}

// openStore needs root: entries get their archive owners, and hard links
// are made from descriptors (linkat AT_EMPTY_PATH).
func openStore(t *testing.T) *Store {
	t.Helper()
	testdaemon.RequireRoot(t)
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refused imports body and checks that it fails as ErrInvalid with a
// message containing want, leaving nothing in the store.
func refused(t *testing.T, s *Store, body []byte, want string) {
	t.Helper()
	imp, err := s.ImportUnified(bytes.NewReader(body), nil, nil)
	if err == nil {
		t.Fatalf("import succeeded: %+v", imp)
	}
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q: want ErrInvalid naming %q", err, want)
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 0 {
		t.Fatalf("refused import left %v", entries)
	}
}

// The reviewer's sequence: a directory entry over a symlink to a host
// directory, then a file below it.
func TestDirectoryOverSymlinkRefused(t *testing.T) {
	s, v := openStore(t), newVictim(t)
	refused(t, s, tarball(t, true,
		dir("rootfs/", 0o755),
		sym("rootfs/a", v.dir),
		dir("rootfs/a/", 0o777),
		reg("rootfs/a/evil", "owned\n", 0o4755),
	), `"rootfs/a"`)
	v.untouched(t)

	// The same with the directory entry but no file after it: the chmod
	// alone was the attack on the directory's mode.
	refused(t, s, tarball(t, true, sym("rootfs/a", v.dir), dir("rootfs/a", 0o777)), `"rootfs/a"`)
	v.untouched(t)
}

func TestFileOverSymlinkRefused(t *testing.T) {
	s, v := openStore(t), newVictim(t)
	refused(t, s, tarball(t, true, sym("rootfs/a", v.file), reg("rootfs/a", "owned\n", 0o644)), `"rootfs/a"`)
	v.untouched(t)
	// A hard link over the symlink would not write through it, but is
	// refused the same way.
	refused(t, s, tarball(t, true, sym("rootfs/a", v.file), reg("rootfs/c", "x", 0o644), hard("rootfs/a", "rootfs/c")), `"rootfs/a" would replace the symlink`)
	v.untouched(t)
}

func TestSymlinkChainRefused(t *testing.T) {
	s, v := openStore(t), newVictim(t)
	for _, through := range []string{"rootfs/a/evil", "rootfs/b/evil", "rootfs/a/secret"} {
		refused(t, s, tarball(t, true,
			sym("rootfs/a", "b"),
			sym("rootfs/b", v.dir),
			reg(through, "owned\n", 0o644),
		), `"`+through+`" is a symlink or is reached through one`)
		v.untouched(t)
	}
	// A chain through a relative symlink inside the tree is refused too:
	// nothing is ever written through a link, wherever it points.
	refused(t, s, tarball(t, true, dir("rootfs/real", 0o755), sym("rootfs/l", "real"), reg("rootfs/l/f", "x", 0o644)), `"rootfs/l/f"`)
}

func TestEscapingNamesRefused(t *testing.T) {
	s, v := openStore(t), newVictim(t)
	refused(t, s, tarball(t, true, reg("rootfs/../../evil", "x", 0o644)), "escapes")
	refused(t, s, tarball(t, true, reg("rootfs/a/../../b", "x", 0o644)), "escapes")
	refused(t, s, tarball(t, true, reg(v.dir+"/evil", "x", 0o644)), "absolute")
	refused(t, s, tarball(t, true, sym("rootfs", v.dir), reg("rootfs/evil", "x", 0o644)), `"rootfs" is not a directory`)
	v.untouched(t)
}

func TestHardLinksOutRefused(t *testing.T) {
	s, v := openStore(t), newVictim(t)
	cases := map[string][]ent{
		"dotdot":       {hard("rootfs/shadow", "../etc/shadow")},
		"absolute":     {hard("rootfs/shadow", v.file)},
		"rootfs-dd":    {hard("rootfs/shadow", "rootfs/../../"+v.file)},
		"not-in-root":  {hard("rootfs/meta", "metadata.yaml")},
		"via-symlink":  {sym("rootfs/d", v.dir), hard("rootfs/h", "rootfs/d/secret")},
		"to-symlink":   {sym("rootfs/s", v.file), hard("rootfs/h", "rootfs/s")},
		"via-chain":    {sym("rootfs/a", "b"), sym("rootfs/b", v.dir), hard("rootfs/h", "rootfs/a/secret")},
		"to-directory": {dir("rootfs/d", 0o755), hard("rootfs/h", "rootfs/d")},
		"missing":      {hard("rootfs/h", "rootfs/nothing")},
		"itself":       {reg("rootfs/h", "x", 0o644), hard("rootfs/h", "rootfs/h")},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			refused(t, s, tarball(t, true, entries...), `hard link "rootfs/`)
			v.untouched(t)
		})
	}
}

// A rootfs like the busybox test image: relative and absolute symlinks,
// a hard link, setuid and sticky modes, owners, implicit parents.
func legitRootfs(p string) []ent {
	own := func(e ent, uid, gid int) ent { e.Uid, e.Gid = uid, gid; return e }
	return []ent{
		dir(p+"", 0o755),
		dir(p+"bin/", 0o755),
		reg(p+"bin/busybox", "#!busybox\n", 0o755),
		sym(p+"bin/ls", "busybox"),
		sym(p+"bin/sh", "/bin/busybox"),
		dir(p+"sbin/", 0o755),
		sym(p+"sbin/init", "/bin/busybox"),
		hard(p+"bin/su", p+"bin/busybox"),
		reg(p+"usr/bin/passwd", "pw\n", 0o4755),
		dir(p+"tmp/", 0o1777),
		own(dir(p+"home/user/", 0o700), 1000, 1000),
		own(reg(p+"home/user/.profile", "export A=1\n", 0o644), 1000, 1000),
		reg(p+"etc/hostname", "old\n", 0o644),
		reg(p+"etc/hostname", "new\n", 0o644),
		sym(p+"etc/mtab", "/proc/mounts"),
		sym(p+"etc/mtab", "../proc/self/mounts"),
		{Header: tar.Header{Name: p + "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{Header: tar.Header{Name: p + "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8}},
		{Header: tar.Header{Name: p + "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}},
	}
}

func checkLegit(t *testing.T, root string) {
	t.Helper()
	for name, want := range map[string]string{"bin/ls": "busybox", "bin/sh": "/bin/busybox", "sbin/init": "/bin/busybox", "etc/mtab": "../proc/self/mounts"} {
		if got, err := os.Readlink(filepath.Join(root, name)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", name, got, err, want)
		}
	}
	mode := func(name string) (os.FileMode, syscall.Stat_t) {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, name), &st); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fi, _ := os.Lstat(filepath.Join(root, name))
		return fi.Mode(), st
	}
	if m, _ := mode("."); m != os.ModeDir|0o755 {
		t.Errorf("root mode %v", m)
	}
	if m, _ := mode("usr/bin/passwd"); m != os.ModeSetuid|0o755 {
		t.Errorf("setuid file mode %v", m)
	}
	if m, _ := mode("tmp"); m != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("tmp mode %v", m)
	}
	if m, st := mode("home/user"); m != os.ModeDir|0o700 || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("home/user %v %d:%d", m, st.Uid, st.Gid)
	}
	if _, st := mode("home/user/.profile"); st.Uid != 1000 {
		t.Errorf(".profile owner %d", st.Uid)
	}
	_, a := mode("bin/busybox")
	_, b := mode("bin/su")
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d %d, %d links", a.Ino, b.Ino, a.Nlink)
	}
	if m, _ := mode("usr"); m != os.ModeDir|0o755 {
		t.Errorf("implicit parent mode %v", m)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "new\n" {
		t.Errorf("etc/hostname %q: the later entry should win", b)
	}
	for _, skipped := range []string{"dev/null", "dev/sda", "run/fifo"} {
		if _, err := os.Lstat(filepath.Join(root, skipped)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was unpacked: %v", skipped, err)
		}
	}
}

func TestLegitimateImageUnpacks(t *testing.T) {
	s := openStore(t)
	imp, err := s.ImportUnified(bytes.NewReader(tarball(t, true, legitRootfs("rootfs/")...)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imp.Metadata.Architecture != "x86_64" || !s.Has(imp.Fingerprint) {
		t.Fatalf("import: %+v", imp)
	}
	checkLegit(t, s.Rootfs(imp.Fingerprint))
}

func TestSplitUpload(t *testing.T) {
	s, v := openStore(t), newVictim(t)
	// The metadata tarball's templates/ and rootfs/ are never unpacked,
	// whatever they contain.
	meta := tarball(t, true,
		sym("templates", v.dir), reg("templates/evil", "x", 0o644),
		sym("rootfs/a", v.dir), dir("rootfs/a", 0o777), reg("rootfs/a/evil", "x", 0o644))
	imp, err := s.ImportSplit(bytes.NewReader(meta), bytes.NewReader(tarball(t, false, legitRootfs("")...)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkLegit(t, s.Rootfs(imp.Fingerprint))
	v.untouched(t)

	for want, rootfs := range map[string][]ent{
		`"a"`:                {sym("a", v.dir), dir("a/", 0o777), reg("a/evil", "x", 0o644)},
		`"a/evil"`:           {sym("a", "b"), sym("b", v.dir), reg("a/evil", "x", 0o644)},
		`hard link "h"`:      {sym("d", v.dir), hard("h", "d/secret")},
		`hard link "shadow"`: {hard("shadow", "../etc/shadow")},
		`would replace`:      {sym("f", v.file), reg("f", "x", 0o644)},
		`escapes`:            {reg("../x", "x", 0o644)},
	} {
		other := openStore(t)
		_, err := other.ImportSplit(bytes.NewReader(tarball(t, true)), bytes.NewReader(tarball(t, false, rootfs...)), nil, nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("split %v: %v, want ErrInvalid naming %s", rootfs[len(rootfs)-1].Name, err, want)
		}
		if entries, _ := os.ReadDir(other.Dir); len(entries) != 0 {
			t.Errorf("refused split import left %v", entries)
		}
		v.untouched(t)
	}
}
