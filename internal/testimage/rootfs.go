// Package testimage builds a tiny busybox system container image from the
// host's statically linked busybox (Debian busybox-static): a rootfs
// directory for the container driver's tests and an LXD unified image
// tarball for daemon tests and the README setup.
package testimage

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Busybox is the static busybox binary copied into images.
const Busybox = "/bin/busybox"

// HaltSignals are the signals the image's init treats as "shut down".
// liblxc sends SIGPWR by default; busybox's own init ignores it, which
// would turn every clean stop into a timeout followed by SIGKILL.
const HaltSignals = "PWR TERM"

// initScript is /sbin/init. "wait" (unlike a foreground command) returns as
// soon as a trapped signal arrives, so the trap runs at once; ash's wait
// also reaps orphans that the kernel reparents to pid 1. The trap kills the
// sleeper itself so the script also exits cleanly outside a pid namespace.
const initScript = `#!/bin/sh
# Minimal init for tests: sleep until told to halt, then exit cleanly.
trap 'kill $sleeper 2>/dev/null; exit 0' ` + HaltSignals + `
while :; do
	sleep 2147483647 &
	sleeper=$!
	wait
done
`

var files = []struct {
	path    string
	mode    os.FileMode
	content string
}{
	{"sbin/init", 0o755, initScript},
	{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
	{"etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"},
	{"etc/shadow", 0o640, "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"},
	{"etc/hostname", 0o644, "busybox\n"},
	{"etc/hosts", 0o644, "127.0.0.1 localhost\n::1 localhost\n"},
	{"etc/os-release", 0o644, "NAME=BusyBox\nID=busybox\nPRETTY_NAME=\"BusyBox test image\"\n"},
}

var dirs = []struct {
	path string
	mode os.FileMode
}{
	{"bin", 0o755}, {"sbin", 0o755}, {"usr/bin", 0o755}, {"usr/sbin", 0o755},
	{"etc", 0o755}, {"dev", 0o755}, {"proc", 0o755}, {"sys", 0o755},
	{"run", 0o755}, {"var/log", 0o755}, {"home", 0o755}, {"mnt", 0o755},
	{"root", 0o700}, {"tmp", os.ModeSticky | 0o777}, {"var/tmp", os.ModeSticky | 0o777},
}

// BuildRootfs populates dir (created if missing) with a busybox system.
// Files are owned by whoever runs it (root in practice): the container
// driver maps them with an idmapped mount, images are never chowned.
func BuildRootfs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range dirs {
		p := filepath.Join(dir, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		// MkdirAll applies the umask and skips existing dirs.
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}
	if err := copyFile(Busybox, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.path), []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	return linkApplets(dir)
}

// linkApplets creates a symlink to /bin/busybox for every applet at the
// path busybox itself reports, except the ones the image provides.
func linkApplets(dir string) error {
	out, err := exec.Command(Busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("listing busybox applets: %w", err)
	}
	for _, rel := range strings.Fields(string(out)) {
		if rel == "sbin/init" || rel == "linuxrc" || rel == "bin/busybox" {
			continue
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		err := os.Symlink("/bin/busybox", dst)
		if err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
