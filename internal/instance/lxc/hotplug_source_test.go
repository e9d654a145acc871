package lxcdriver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// swapForSymlink replaces the real directory dir with a symlink to target,
// as a user who owns dir's parent can at any moment, and puts it back on
// cleanup.
func swapForSymlink(t *testing.T, dir, target string) {
	t.Helper()
	if err := os.Rename(dir, dir+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(dir)
		os.Rename(dir+".real", dir)
	})
}

// sourceTree makes base/sub/data holding a marker file, and a secret dir
// outside base with a data dir of its own, standing for /etc.
func sourceTree(t *testing.T) (base, secret string) {
	t.Helper()
	base, secret = hostDir(t, 0o755), hostDir(t, 0o755)
	for dir, content := range map[string]string{filepath.Join(base, "sub", "data"): "allowed\n", filepath.Join(secret, "data"): "secret\n"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "marker"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return base, secret
}

// TestHelperSourceNoSymlinks: the helper opens a mount source following no
// symlink, in the last component or any before it, and the refusal names
// the mount and the source; a canonical path is mounted.
func TestHelperSourceNoSymlinks(t *testing.T) {
	base, secret := sourceTree(t)
	if err := os.Symlink(filepath.Join(secret, "data"), filepath.Join(base, "leaf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(base, "mid")); err != nil {
		t.Fatal(err)
	}
	c := startTest(t, testSpec(t))
	path := "/tmp/" + c.spec.Name + "-src"
	for _, src := range []string{filepath.Join(base, "leaf"), filepath.Join(base, "mid", "data")} {
		_, err := hotplug(t, c, func(s *Spec) { s.Mounts = []Mount{{Source: src, Path: path, ReadOnly: true}} })
		if !errors.Is(err, ErrHotplug) || !strings.Contains(err.Error(), path+": source "+src+" has a symlink in its path") {
			t.Errorf("source %s: %v", src, err)
		}
		if code, _, _ := run(t, c, "test", "-e", path+"/marker"); code == 0 {
			t.Fatalf("source %s mounted", src)
		}
	}
	if _, err := hotplug(t, c, func(s *Spec) {
		s.Mounts = []Mount{{Source: filepath.Join(base, "sub", "data"), Path: path, ReadOnly: true}}
	}); err != nil {
		t.Fatal(err)
	}
	if _, out, _ := run(t, c, "cat", path+"/marker"); out != "allowed\n" {
		t.Fatalf("canonical source reads %q", out)
	}
}

// TestSourceSwappedAfterCheck: a component of a disk's source replaced by
// a symlink after the spec was built (the daemon resolved and checked it)
// makes the start and the hot-plug fail, naming the mount, with nothing of
// the symlink's target mounted and nothing else of the change applied.
func TestSourceSwappedAfterCheck(t *testing.T) {
	base, secret := sourceTree(t)
	src := filepath.Join(base, "sub", "data")

	t.Run("start", func(t *testing.T) {
		spec := testSpec(t)
		path := "/tmp/" + spec.Name + "-disk"
		spec.Mounts = []Mount{{Source: src, Path: path}}
		c, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Delete() })
		swapForSymlink(t, filepath.Join(base, "sub"), secret)
		err = c.Start()
		if !errors.Is(err, ErrStart) || !strings.Contains(err.Error(), path+": source "+src+" has a symlink in its path") {
			t.Fatalf("start with a swapped source: %v", err)
		}
		if st, err := c.State(); err != nil || st.Status != StatusStopped {
			t.Fatalf("after the refused start: %v %v", st.Status, err)
		}
	})

	t.Run("hotplug", func(t *testing.T) {
		other := hostDir(t, 0o755)
		c := startTest(t, testSpec(t))
		path, otherPath := "/tmp/"+c.spec.Name+"-disk", "/tmp/"+c.spec.Name+"-other"
		next, err := New(withMounts(c.spec, Mount{Source: other, Path: otherPath}, Mount{Source: src, Path: path}))
		if err != nil {
			t.Fatal(err)
		}
		swapForSymlink(t, filepath.Join(base, "sub"), secret)
		err = next.UpdateDevices(c)
		if !errors.Is(err, ErrHotplug) || !strings.Contains(err.Error(), path+": source "+src+" has a symlink in its path") {
			t.Fatalf("hot-plug of a swapped source: %v", err)
		}
		if code, _, _ := run(t, c, "test", "-e", path+"/marker"); code == 0 {
			t.Fatal("the symlink's target is visible in the container")
		}
		if line := mountLine(t, c, otherPath); line != "" {
			t.Fatalf("the rest of the refused change was left mounted: %s", line)
		}
	})
}

// withMounts is s with mounts added.
func withMounts(s Spec, mounts ...Mount) Spec {
	s.Mounts = append(append([]Mount(nil), s.Mounts...), mounts...)
	return s
}
