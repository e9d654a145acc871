package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moat/moat/internal/testdaemon"
)

func sparesDir(d *testdaemon.Daemon) string {
	return filepath.Join(d.Dir, "storage-pools/default/spares")
}

// readySpare waits until the image has a complete spare other than not.
func readySpare(t testing.TB, d *testdaemon.Daemon, fp, not string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m, _ := filepath.Glob(filepath.Join(sparesDir(d), fp, "s-*"))
		for _, sp := range m {
			if sp != not {
				return sp
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no spare rootfs of %s appeared", fp)
	return ""
}

func inoOf(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func containerRootfs(t testing.TB, d *testdaemon.Daemon, name string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(d.Dir, "storage-pools/default/containers/*"+name))
	if len(m) != 1 {
		t.Fatalf("container dir of %s: %v", name, m)
	}
	return filepath.Join(m[0], "rootfs")
}

// TestInstanceFromSpare: after an import and after each create, a spare
// copy of the image rootfs is made; the next create takes it (it leaves
// the spares dir, its files become the container's) and a new one appears.
// Two containers made from spares share no inode. A staging dir a crash
// left is never used and goes at start, as do old spares (refilled for a
// recently used image). Deleting the image removes its spares.
func TestInstanceFromSpare(t *testing.T) {
	d, fp := withImage(t)
	sp := readySpare(t, d, fp, "")
	if fi, err := os.Stat(sparesDir(d)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spares dir: %v %v", fi.Mode(), err)
	}
	ino := inoOf(t, filepath.Join(sp, "rootfs/bin/busybox"))
	launch(t, d, "sp1", nil)
	if _, err := os.Lstat(sp); !os.IsNotExist(err) {
		t.Fatalf("spare still there after a create: %v", err)
	}
	if got := inoOf(t, filepath.Join(containerRootfs(t, d, "sp1"), "bin/busybox")); got != ino {
		t.Fatal("the create did not take the spare")
	}
	sp2 := readySpare(t, d, fp, sp)
	ino2 := inoOf(t, filepath.Join(sp2, "rootfs/bin/busybox"))
	launch(t, d, "sp2", nil)
	if got := inoOf(t, filepath.Join(containerRootfs(t, d, "sp2"), "bin/busybox")); got != ino2 {
		t.Fatal("the second create did not take the new spare")
	}
	if code, out := execOut(t, d, "sp2", "cat", "/etc/hostname"); code != 0 {
		t.Fatalf("exec in a container from a spare: %d %s", code, out)
	}

	// No file of one is a file of the other.
	inos := func(root string) map[uint64]string {
		out := map[uint64]string{}
		err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			out[inoOf(t, path)] = path
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := inos(containerRootfs(t, d, "sp1")), inos(containerRootfs(t, d, "sp2"))
	if len(a) < 100 || len(b) < 100 {
		t.Fatalf("rootfs inode counts %d, %d", len(a), len(b))
	}
	for ino, path := range a {
		if other, ok := b[ino]; ok {
			t.Errorf("%s and %s share inode %d", path, other, ino)
		}
	}

	// A half-copied spare (staging dir) goes at start, as does a complete
	// one (its file data was never fsync'd).
	sp3 := readySpare(t, d, fp, sp2)
	half := filepath.Join(sparesDir(d), ".tmp-half")
	if err := os.MkdirAll(filepath.Join(half, "rootfs/bin"), 0o700); err != nil {
		t.Fatal(err)
	}
	d.Kill() // a crash in the middle of a refill
	d.Restart()
	if _, err := os.Lstat(half); !os.IsNotExist(err) {
		t.Fatalf("staging dir of a spare left after restart: %v", err)
	}
	if _, err := os.Lstat(sp3); !os.IsNotExist(err) {
		t.Fatalf("old spare kept across restart: %v", err)
	}
	readySpare(t, d, fp, "") // the image was used: refilled at start

	if res := wait(t, d, d.Do("DELETE", "/1.0/images/"+fp, nil)); res.Status != "Success" {
		t.Fatalf("delete image: %s", res.Err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Lstat(filepath.Join(sparesDir(d), fp)); !os.IsNotExist(err) {
		t.Fatalf("spares of a deleted image: %v", err)
	}
	if entries, _ := os.ReadDir(sparesDir(d)); len(entries) != 0 {
		t.Fatalf("left in the spares dir: %v", entries)
	}
}
