package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// seedTar builds a tar of entries, gzipped when gz; seeds are mostly
// plain so that the fuzzer's mutations reach the headers.
func seedTar(tb testing.TB, gz bool, entries ...ent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	var zw *gzip.Writer
	tw := tar.NewWriter(&buf)
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	}
	for _, e := range entries {
		h := e.Header
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// fuzzStore opens a store at parent/images beside a victim directory at
// parent/victim: an archive reaching out of the store by "../" steps
// lands there first.
func fuzzStore(t *testing.T) (string, *Store, victim) {
	parent := t.TempDir()
	v := victim{dir: filepath.Join(parent, "victim")}
	v.file = filepath.Join(v.dir, "secret")
	if err := os.Mkdir(v.dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v.file, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(v.dir, 0o750)
	os.Chmod(v.file, 0o600)
	s, err := Open(filepath.Join(parent, "images"))
	if err != nil {
		t.Fatal(err)
	}
	return parent, s, v
}

// outcome checks what every import must leave, whatever it was given:
// nothing written outside the store (the parent holds the store and the
// victim only, the victim untouched); a refusal wraps ErrInvalid and
// leaves the store empty; an accepted import is named by the sha256 of
// what was uploaded, holds exactly the files want, and its rootfs only
// directories, regular files and symlinks (no device node or FIFO).
func outcome(t *testing.T, parent string, s *Store, v victim, imp *Imported, err error, upload []byte, want func(fp string) []string) {
	t.Helper()
	entries, _ := os.ReadDir(parent)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"images", "victim"}) {
		t.Fatalf("the store's parent holds %v after the import (%v)", names, err)
	}
	v.untouched(t)
	names = names[:0]
	entries, _ = os.ReadDir(s.Dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("refusal is not ErrInvalid (a 500 for the client's bytes): %v", err)
		}
		if len(names) != 0 {
			t.Fatalf("refused import (%v) left %v", err, names)
		}
		return
	}
	sum := sha256.Sum256(upload)
	fp := hex.EncodeToString(sum[:])
	if imp.Fingerprint != fp || imp.Size != int64(len(upload)) || imp.Metadata.Architecture == "" {
		t.Fatalf("imported %+v, want fingerprint %s and size %d", imp, fp, len(upload))
	}
	if w := want(fp); !slices.Equal(names, w) {
		t.Fatalf("store holds %v, want %v", names, w)
	}
	err = filepath.WalkDir(s.Rootfs(fp), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if m := d.Type(); m != 0 && m != fs.ModeDir && m != fs.ModeSymlink {
			t.Errorf("%s unpacked as %v", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func unifiedSeeds(tb testing.TB) [][]byte {
	meta := reg("metadata.yaml", metaYAML, 0o644)
	long := strings.Repeat("x", 300)
	out := [][]byte{
		seedTar(tb, false, append([]ent{meta}, legitRootfs("rootfs/")...)...),
		seedTar(tb, true, append([]ent{meta}, legitRootfs("rootfs/")...)...),
		seedTar(tb, false, meta, dir("rootfs/", 0o755)),
		seedTar(tb, false, meta, sym("rootfs/a", "../../../victim"), reg("rootfs/a/evil", "x", 0o644)),
		seedTar(tb, false, meta, sym("rootfs/a", "../../../victim"), dir("rootfs/a", 0o777)),
		seedTar(tb, false, meta, sym("rootfs/a", "/"), reg("rootfs/a/tmp/evil", "x", 0o644)),
		seedTar(tb, false, meta, reg("rootfs/f", "x", 0o644), sym("rootfs/f", "../../../victim/secret"), reg("rootfs/f", "y", 0o644)),
		seedTar(tb, false, meta, dir("rootfs/", 0o755), hard("rootfs/h", "rootfs/../../../victim/secret")),
		seedTar(tb, false, meta, dir("rootfs/", 0o755), hard("rootfs/h", "../victim/secret")),
		seedTar(tb, false, meta, sym("rootfs/d", "../../../victim"), hard("rootfs/h", "rootfs/d/secret")),
		seedTar(tb, false, meta, reg("rootfs/a", "x", 0o644), hard("rootfs/a", "rootfs/a")),
		seedTar(tb, false, meta, reg("rootfs/../victim/evil", "x", 0o644)),
		seedTar(tb, false, meta, reg("/abs", "x", 0o644)),
		seedTar(tb, false, meta, reg("rootfs", "not a directory", 0o644)),
		seedTar(tb, false, meta, dir("rootfs/d", 0o755), reg("rootfs/d", "x", 0o644)),
		seedTar(tb, false, meta, reg("rootfs/"+long, "x", 0o644)),
		seedTar(tb, false, meta, reg("rootfs/a/"+strings.Repeat("b/", 2100)+"c", "x", 0o644)),
		seedTar(tb, false, meta, sym("rootfs/s", strings.Repeat("a/", 2100))),
		seedTar(tb, false, meta, dir("rootfs/", 0o755), hard("rootfs/h", "rootfs/"+long)),
		seedTar(tb, false, meta, ent{Header: tar.Header{Name: "rootfs/o", Typeflag: tar.TypeReg, Uid: -1}}),
		seedTar(tb, false, meta, ent{Header: tar.Header{Name: "rootfs/o", Typeflag: tar.TypeSymlink}}),
		seedTar(tb, false, meta, ent{Header: tar.Header{Name: "rootfs/x", Typeflag: 'V'}}),
		seedTar(tb, false, dir("rootfs/", 0o755)),
		seedTar(tb, false, reg("metadata.yaml", "creation_date: 1\n", 0o644), dir("rootfs/", 0o755)),
		seedTar(tb, false, reg("metadata.yaml", "architecture: [x\n", 0o644), dir("rootfs/", 0o755)),
		seedTar(tb, false, sym("metadata.yaml", "/etc/passwd"), dir("rootfs/", 0o755)),
		seedTar(tb, false, meta, sym("templates", "../../../victim"), reg("templates/x", "y", 0o644), dir("rootfs/", 0o755)),
		{},
		[]byte("not an archive at all"),
		{0xfd, '7', 'z', 'X', 'Z', 0},
		{0x28, 0xb5, 0x2f, 0xfd, 0},
		[]byte("hsqs"),
		[]byte("BZh91AY&SY"),
		{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3},
	}
	gz := out[1]
	return append(out, gz[:len(gz)/2], gz[:len(gz)-8], sparseTar(tb, 64<<20))
}

// sparseTar is a unified image whose rootfs/big is a GNU sparse file
// (PAX format 1.0) of realsize bytes, nearly all hole: archive/tar's
// Writer cannot write one, so the headers are put together here.
func sparseTar(tb testing.TB, realsize int64) []byte {
	tb.Helper()
	rec := func(k, v string) string {
		s := " " + k + "=" + v + "\n"
		for n := len(s) + 1; ; n++ {
			if r := strconv.Itoa(n) + s; len(r) == n {
				return r
			}
		}
	}
	pax := rec("GNU.sparse.major", "1") + rec("GNU.sparse.minor", "0") +
		rec("GNU.sparse.name", "rootfs/big") + rec("GNU.sparse.realsize", strconv.FormatInt(realsize, 10))
	// The 1.0 map opens the data: one block of 1 byte at the very end.
	sparseMap := "1\n" + strconv.FormatInt(realsize-1, 10) + "\n1\n"
	data := sparseMap + strings.Repeat("\x00", 512-len(sparseMap)) + "x"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []ent{reg("metadata.yaml", metaYAML, 0o644), reg("pax", pax, 0o644), reg("rootfs/big", data, 0o644)} {
		h := e.Header
		h.Size, h.Format = int64(len(e.body)), tar.FormatUSTAR
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	// Turn the second entry into the PAX header of the third.
	b := buf.Bytes()
	hdr := b[1024 : 1024+512]
	hdr[156] = tar.TypeXHeader
	copy(hdr[148:156], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// TestSparseFileRefused: a sparse file is refused before anything is
// written; archive/tar would expand its holes, and the declared size may
// be up to 2^63 (here 64 MiB, which the unpacking used to write out from
// a 3 KB upload).
func TestSparseFileRefused(t *testing.T) {
	testdaemon.RequireRoot(t)
	parent, s, v := fuzzStore(t)
	upload := sparseTar(t, 64<<20)
	imp, err := s.ImportUnified(bytes.NewReader(upload), nil, nil)
	if err == nil || !strings.Contains(err.Error(), `"rootfs/big" is a sparse file`) {
		t.Fatalf("sparse import: %+v, %v", imp, err)
	}
	outcome(t, parent, s, v, imp, err, upload, nil)
	// The same archive with the sparse file as a plain one unpacks.
	s2 := openStore(t)
	if _, err := s2.ImportUnified(bytes.NewReader(seedTar(t, false, reg("metadata.yaml", metaYAML, 0o644), reg("rootfs/big", "x", 0o644))), nil, nil); err != nil {
		t.Fatal(err)
	}
}

// FuzzImportUnified feeds arbitrary bytes to the unified-tarball import.
func FuzzImportUnified(f *testing.F) {
	testdaemon.RequireRoot(f)
	for _, seed := range unifiedSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, upload []byte) {
		parent, s, v := fuzzStore(t)
		imp, err := s.ImportUnified(bytes.NewReader(upload), nil, nil)
		files := func(fp string) []string { return []string{fp, fp + ".rootfs"} }
		outcome(t, parent, s, v, imp, err, upload, files)
		if err == nil {
			// The same bytes again (a retry, another project's upload)
			// are the same image and change nothing.
			again, err := s.ImportUnified(bytes.NewReader(upload), nil, nil)
			outcome(t, parent, s, v, again, err, upload, files)
		}
	})
}

// FuzzImportSplit feeds arbitrary bytes to both parts of a split import.
func FuzzImportSplit(f *testing.F) {
	testdaemon.RequireRoot(f)
	meta := seedTar(f, false, reg("metadata.yaml", metaYAML, 0o644))
	for _, rootfs := range [][]ent{
		legitRootfs(""),
		{sym("a", "../../../victim"), reg("a/evil", "x", 0o644)},
		{sym("a", "b"), sym("b", "../../../victim"), reg("a/evil", "x", 0o644)},
		{hard("shadow", "../victim/secret")},
		{reg("f", "x", 0o644), hard("g", "rootfs/f")},
		{reg("../x", "x", 0o644)},
		{dir("./", 0o755)},
	} {
		f.Add(meta, seedTar(f, false, rootfs...))
	}
	for _, m := range unifiedSeeds(f)[:8] {
		f.Add(m, seedTar(f, true, legitRootfs("")...))
	}
	f.Add(meta, []byte{})
	f.Add([]byte{}, seedTar(f, false, legitRootfs("")...))
	f.Fuzz(func(t *testing.T, metaPart, rootfsPart []byte) {
		parent, s, v := fuzzStore(t)
		imp, err := s.ImportSplit(bytes.NewReader(metaPart), bytes.NewReader(rootfsPart), nil, nil)
		outcome(t, parent, s, v, imp, err, append(slices.Clip(metaPart), rootfsPart...), func(fp string) []string {
			return []string{fp, fp + ".rootfs", fp + ".rootfs.tar"}
		})
	})
}

// fuzzTypes are the entry types FuzzUnpackEntries picks from: the ones
// the extractor handles, and the ones it skips.
var fuzzTypes = []byte{tar.TypeReg, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo}

// FuzzUnpackEntries builds well-formed archives from fuzzed entries
// (type, name, link target, owner of the first), which arbitrary bytes
// rarely are (the header checksums), so that the fuzzer works on the
// extractor itself: the names, links and orders an attacker chooses.
func FuzzUnpackEntries(f *testing.F) {
	testdaemon.RequireRoot(f)
	f.Add(byte(5), "rootfs/", "", byte(0), "rootfs/bin/sh", "", byte(2), "rootfs/bin/ls", "sh", byte(1), "rootfs/bin/x", "rootfs/bin/sh", 0)
	f.Add(byte(2), "rootfs/a", "../../../victim", byte(0), "rootfs/a/evil", "", byte(5), "rootfs/a/d", "", byte(1), "rootfs/h", "rootfs/a/secret", 0)
	f.Add(byte(0), "rootfs/f", "", byte(2), "rootfs/f", "../../../victim/secret", byte(0), "rootfs/f", "", byte(1), "rootfs/g", "rootfs/f", 0)
	f.Add(byte(2), "rootfs/a", "b", byte(2), "rootfs/b", "/", byte(5), "rootfs/a/etc", "", byte(0), "rootfs/b/etc/passwd", "", 0)
	f.Add(byte(5), "rootfs/d", "", byte(0), "rootfs/d", "", byte(3), "rootfs/dev/null", "", byte(6), "rootfs/p", "", 1000)
	f.Add(byte(0), "rootfs/x", "", byte(1), "rootfs/y", "rootfs/../../victim/secret", byte(1), "rootfs/z", "rootfs/y", byte(1), "rootfs/x", "rootfs/x", -1)
	f.Add(byte(5), "./rootfs", "", byte(0), "rootfs//./a", "", byte(0), "rootfs/"+strings.Repeat("n", 256), "", byte(2), "rootfs/l", strings.Repeat("t/", 2100), 1<<32-1)
	f.Fuzz(func(t *testing.T, t1 byte, n1, l1 string, t2 byte, n2, l2 string, t3 byte, n3, l3 string, t4 byte, n4, l4 string, uid int) {
		entries := []ent{reg("metadata.yaml", metaYAML, 0o644)}
		for i, e := range []struct {
			typ        byte
			name, link string
		}{{t1, n1, l1}, {t2, n2, l2}, {t3, n3, l3}, {t4, n4, l4}} {
			h := tar.Header{Typeflag: fuzzTypes[int(e.typ)%len(fuzzTypes)], Name: e.name, Linkname: e.link, Mode: 0o755, Format: tar.FormatPAX}
			if i == 0 {
				h.Uid, h.Gid = uid, uid
			}
			body := ""
			if h.Typeflag == tar.TypeReg {
				body = "x"
			}
			entries = append(entries, ent{Header: h, body: body})
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			h := e.Header
			h.Size = int64(len(e.body))
			if tw.WriteHeader(&h) != nil {
				return // not an archive tar can write: nothing to test
			}
			tw.Write([]byte(e.body))
		}
		if tw.Close() != nil {
			return
		}
		upload := buf.Bytes()
		parent, s, v := fuzzStore(t)
		imp, err := s.ImportUnified(bytes.NewReader(upload), nil, nil)
		outcome(t, parent, s, v, imp, err, upload, func(fp string) []string { return []string{fp, fp + ".rootfs"} })
	})
}
