package lxcdriver

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestReadonlyDiskRemount: container root owns its mount namespace and
// may remount; a read-only disk must stay read-only all the same, even
// when the source is writable by container root (mode 0777).
func TestReadonlyDiskRemount(t *testing.T) {
	src := hostDir(t, 0o777)
	spec := testSpec(t)
	spec.Mounts = []Mount{{Source: src, Path: "/mnt/ro", ReadOnly: true}}
	c := startTest(t, spec)
	assertLockedReadonly(t, c, src, "/mnt/ro")
}

// assertLockedReadonly tries the remount attack on path and checks that
// nothing reaches the host source dir.
func assertLockedReadonly(t *testing.T, c *Container, src, path string) {
	t.Helper()
	code, _, errOut := run(t, c, "touch", path+"/before")
	if code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Fatalf("write to read-only mount: exit %d %q", code, errOut)
	}
	code, out, errOut := run(t, c, "sh", "-c", "mount -o remount,bind,rw "+path+"; echo rc=$?; touch "+path+"/after")
	t.Logf("remount attempt: %s %s", out, errOut)
	if code == 0 {
		t.Errorf("write after remount,bind,rw succeeded")
	}
	code, out, errOut = run(t, c, "sh", "-c", "mount -o remount,rw "+path+"; touch "+path+"/after2")
	t.Logf("remount rw: %s %s", out, errOut)
	if code == 0 {
		t.Errorf("write after remount,rw succeeded")
	}
	for _, f := range []string{"before", "after", "after2"} {
		if fileExists(filepath.Join(src, f)) {
			t.Errorf("%s written to the host through the read-only mount", f)
		}
	}
}
