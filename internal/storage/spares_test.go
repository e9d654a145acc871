package storage

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
}

// testImage makes a small rootfs: dirs, a setuid file, a hard link, symlinks.
func testImage(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "img.rootfs")
	for _, d := range []string{"bin", "etc", "sbin"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "bin/busybox"), []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(filepath.Join(src, "bin/busybox"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "bin/busybox"), filepath.Join(src, "bin/bb2")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"sh", "ls", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(src, "bin", l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/bin/busybox", filepath.Join(src, "sbin/init")); err != nil {
		t.Fatal(err)
	}
	return src
}

func openPool(t *testing.T) *Dir {
	t.Helper()
	p, err := OpenDir("default", filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startSpares(t *testing.T, p *Dir, src string) *Spares {
	t.Helper()
	s := p.StartSpares(func(string) string { return src }, func(msg string, args ...any) { t.Log(append([]any{msg}, args...)...) })
	t.Cleanup(s.Close)
	return s
}

// waitSpare waits until fp has a complete spare other than not, and
// returns it.
func waitSpare(t *testing.T, p *Dir, fp, not string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, sp := range p.readySpares(fp) {
			if sp != not {
				return sp
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no spare of %s appeared", fp)
	return ""
}

func inodes(t *testing.T, root string) map[uint64]string {
	t.Helper()
	out := map[uint64]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		out[fi.Sys().(*syscall.Stat_t).Ino] = path
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func statOf(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// TestSpareTakenAndRefilled: a create takes the ready spare with a rename
// (the spare disappears, its files are the container's), the container
// dir has the owner and mode of a copied one, and a new spare appears.
func TestSpareTakenAndRefilled(t *testing.T) {
	needRoot(t)
	p := openPool(t)
	src := testImage(t)
	s := startSpares(t, p, src)
	if st := statOf(t, p.spares()); st.Mode&0o7777 != 0o700 || st.Uid != 0 {
		t.Fatalf("spares dir mode %o uid %d", st.Mode&0o7777, st.Uid)
	}
	s.Use("fp1", time.Now())
	sp := waitSpare(t, p, "fp1", "")
	if st := statOf(t, sp); st.Mode&0o7777 != 0o100 || st.Uid != 0 {
		t.Fatalf("spare mode %o uid %d", st.Mode&0o7777, st.Uid)
	}
	if st := statOf(t, p.SpareDir("fp1")); st.Mode&0o7777 != 0o700 || st.Uid != 0 {
		t.Fatalf("spare image dir mode %o uid %d", st.Mode&0o7777, st.Uid)
	}
	ino := statOf(t, filepath.Join(sp, "rootfs/bin/busybox")).Ino

	if !s.Take("fp1", "c1", 1000000, 1000000) {
		t.Fatal("spare not taken")
	}
	if _, err := os.Lstat(sp); !os.IsNotExist(err) {
		t.Fatalf("taken spare still there: %v", err)
	}
	st := statOf(t, p.ContainerDir("c1"))
	if st.Mode&0o7777 != 0o100 || st.Uid != 1000000 || st.Gid != 1000000 {
		t.Fatalf("container dir mode %o owner %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	}
	bb := statOf(t, filepath.Join(p.Rootfs("c1"), "bin/busybox"))
	if bb.Ino != ino {
		t.Fatal("container rootfs is not the spare")
	}
	if bb.Mode&0o7777 != 0o4755 || bb.Uid != 0 {
		t.Fatalf("busybox mode %o uid %d", bb.Mode&0o7777, bb.Uid)
	}
	if statOf(t, filepath.Join(p.Rootfs("c1"), "bin/bb2")).Ino != ino {
		t.Fatal("hard link inside the image not kept")
	}
	if ln, _ := os.Readlink(filepath.Join(p.Rootfs("c1"), "sbin/init")); ln != "/bin/busybox" {
		t.Fatalf("symlink %q", ln)
	}

	s.Use("fp1", time.Now())
	waitSpare(t, p, "fp1", sp)
	if n := len(p.readySpares("fp1")); n != MaxSparesPerImage {
		t.Fatalf("%d spares", n)
	}
	// No spare, no copy running: Take reports false, the caller copies.
	if s.Take("fp-other", "c2", 0, 0) {
		t.Fatal("took a spare of an image that has none")
	}
	// An existing container dir is never replaced.
	if s.Take("fp1", "c1", 0, 0) {
		t.Fatal("took a spare onto an existing container dir")
	}
}

// TestSpareTakeWaitsForCopy: a create right after the refill started takes
// that copy instead of starting a second one.
func TestSpareTakeWaitsForCopy(t *testing.T) {
	needRoot(t)
	p := openPool(t)
	s := startSpares(t, p, testImage(t))
	s.Use("fp1", time.Now())
	for i := 0; i < 1000 && !s.Busy() && len(p.readySpares("fp1")) == 0; i++ {
		time.Sleep(time.Millisecond)
	}
	if !s.Take("fp1", "c1", 0, 0) {
		t.Fatal("spare being copied not taken")
	}
}

// TestSparesNotShared: two containers made from spares share no inode
// with each other or with the image.
func TestSparesNotShared(t *testing.T) {
	needRoot(t)
	p := openPool(t)
	src := testImage(t)
	s := startSpares(t, p, src)
	s.Use("fp1", time.Now())
	for _, name := range []string{"c1", "c2"} {
		waitSpare(t, p, "fp1", "")
		if !s.Take("fp1", name, 0, 0) {
			t.Fatalf("%s: no spare taken", name)
		}
		s.Use("fp1", time.Now())
	}
	img, a, b := inodes(t, src), inodes(t, p.Rootfs("c1")), inodes(t, p.Rootfs("c2"))
	if len(a) != len(img) || len(b) != len(img) {
		t.Fatalf("inode counts: image %d, c1 %d, c2 %d", len(img), len(a), len(b))
	}
	for ino, path := range a {
		if other, ok := b[ino]; ok {
			t.Errorf("c1 %s and c2 %s share inode %d", path, other, ino)
		}
		if other, ok := img[ino]; ok {
			t.Errorf("c1 %s and the image %s share inode %d", path, other, ino)
		}
	}
	for ino, path := range b {
		if other, ok := img[ino]; ok {
			t.Errorf("c2 %s and the image %s share inode %d", path, other, ino)
		}
	}
}

// TestSpareIncompleteNeverUsed: a staging dir (a copy a crash interrupted)
// and anything in an image's spare dir that is not a complete spare are
// never taken, and opening the pool removes all of it.
func TestSpareIncompleteNeverUsed(t *testing.T) {
	needRoot(t)
	p := openPool(t)
	half := filepath.Join(p.spares(), ".tmp-123")
	odd := filepath.Join(p.SpareDir("fp1"), ".tmp-456")
	for _, d := range []string{filepath.Join(half, "rootfs/bin"), filepath.Join(odd, "rootfs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := startSpares(t, p, filepath.Join(t.TempDir(), "missing"))
	if s.Take("fp1", "c1", 0, 0) {
		t.Fatal("an incomplete spare was taken")
	}
	s.Close()
	p2, err := OpenDir("default", p.Path)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(p2.spares()); len(entries) != 0 {
		t.Fatalf("left after open: %v", entries)
	}
}

// TestSpareForget: deleting the image removes its spares and stops the
// refill; a copy running at that moment is dropped.
func TestSpareForget(t *testing.T) {
	needRoot(t)
	p := openPool(t)
	s := startSpares(t, p, testImage(t))
	s.Use("fp1", time.Now())
	waitSpare(t, p, "fp1", "")
	if err := s.Forget("fp1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p.SpareDir("fp1")); !os.IsNotExist(err) {
		t.Fatalf("spares of a forgotten image: %v", err)
	}
	// Forget during a copy: nothing is renamed into place afterwards.
	s.Use("fp1", time.Now())
	_ = s.Forget("fp1")
	for i := 0; i < 1000 && s.Busy(); i++ {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := os.Lstat(p.SpareDir("fp1")); !os.IsNotExist(err) {
		t.Fatalf("spare appeared after Forget: %v", err)
	}
	if entries, _ := os.ReadDir(p.spares()); len(entries) != 0 {
		t.Fatalf("left in spares: %v", entries)
	}
}

// TestSpareOnlyRecentImages: an image last used longer ago than SpareTTL
// gets no spare, and expire removes spares of images not used recently.
func TestSpareOnlyRecentImages(t *testing.T) {
	needRoot(t)
	p := openPool(t)
	s := startSpares(t, p, testImage(t))
	s.Use("old", time.Now().Add(-2*SpareTTL))
	s.Use("fp1", time.Now())
	waitSpare(t, p, "fp1", "")
	for i := 0; i < 1000 && s.Busy(); i++ {
		time.Sleep(time.Millisecond)
	}
	if _, err := os.Lstat(p.SpareDir("old")); !os.IsNotExist(err) {
		t.Fatalf("spare for an image not used recently: %v", err)
	}
	s.mu.Lock()
	s.used["fp1"] = time.Now().Add(-2 * SpareTTL)
	s.mu.Unlock()
	s.expire()
	if entries, _ := os.ReadDir(p.spares()); len(entries) != 0 {
		t.Fatalf("left after expire: %v", entries)
	}
}
