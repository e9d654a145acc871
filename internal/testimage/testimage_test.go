package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBuildRootfs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := BuildRootfs(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bin/sh", "bin/ls", "usr/bin/seq", "etc/passwd", "etc/hostname"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v", fi.Mode(), err)
	}
	// A second build over the same dir is harmless (image refresh).
	if err := BuildRootfs(dir); err != nil {
		t.Fatal(err)
	}
}

// TestInitTrapsHalt runs the image's init on the host and checks the halt
// signals make it exit 0 instead of being ignored.
func TestInitTrapsHalt(t *testing.T) {
	dir := t.TempDir()
	if err := BuildRootfs(dir); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGPWR, syscall.SIGTERM} {
		cmd := exec.Command(Busybox, "sh", filepath.Join(dir, "sbin/init"))
		cmd.Env = []string{"PATH=/bin"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitCaught(t, cmd.Process.Pid, sig)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: init exited with %v", sig, err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v ignored by init", sig)
		}
	}
}

// waitCaught waits until pid has installed a handler for sig (SigCgt in
// /proc/pid/status), so the signal is not sent before the trap exists.
func waitCaught(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	for range 1000 {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if hex, ok := strings.CutPrefix(line, "SigCgt:\t"); ok {
				mask, err := strconv.ParseUint(hex, 16, 64)
				if err == nil && mask&(1<<(sig-1)) != 0 {
					return
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("init never trapped %v", sig)
}

func TestWriteUnified(t *testing.T) {
	dir := t.TempDir()
	if err := BuildRootfs(dir); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0)
	var a, b bytes.Buffer
	fpA, err := WriteUnified(&a, dir, created)
	if err != nil {
		t.Fatal(err)
	}
	fpB, err := WriteUnified(&b, dir, created)
	if err != nil {
		t.Fatal(err)
	}
	if fpA != fpB || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("tarball is not reproducible")
	}
	sum := sha256.Sum256(a.Bytes())
	if fpA != hex.EncodeToString(sum[:]) {
		t.Fatal("fingerprint is not the sha256 of the tarball")
	}

	gz, err := gzip.NewReader(&a)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	seen := map[string]*tar.Header{}
	var meta string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		if h.Name == "metadata.yaml" {
			m, _ := io.ReadAll(tr)
			meta = string(m)
		}
	}
	for _, want := range []string{"architecture: x86_64", "creation_date: 1700000000", "os: busybox", "description: \"BusyBox test image\""} {
		if !strings.Contains(meta, want) {
			t.Errorf("metadata.yaml lacks %q:\n%s", want, meta)
		}
	}
	if h := seen["rootfs/bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/bin/busybox" {
		t.Errorf("rootfs/bin/sh: %+v", h)
	}
	if h := seen["rootfs/bin/busybox"]; h == nil || h.Typeflag != tar.TypeReg || h.Size < 1<<20 {
		t.Errorf("rootfs/bin/busybox: %+v", h)
	}
	if h := seen["rootfs/sbin/init"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("rootfs/sbin/init: %+v", h)
	}
}

func TestBuildImage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busybox.tar.gz")
	fp, err := BuildImage(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if fp != hex.EncodeToString(sum[:]) {
		t.Fatalf("fingerprint %s does not match file", fp)
	}
}
