package lxcdriver

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// probeSource calls open_by_handle_at(-1, NULL, 0) through the native
// syscall instruction (built with -DNATIVE) or the i386 compat entry
// int $0x80, and exits with the errno it got back: EFAULT (14) from the
// kernel for host root, EPERM (1) from the container's seccomp policy. (The
// module syscalls would not tell: this kernel has no module support and
// answers ENOSYS itself.)
const probeSource = `
void _start(void) {
	long ret;
#ifdef NATIVE
	__asm__ volatile ("syscall" : "=a"(ret) : "a"(304L), "D"(-1L), "S"(0L), "d"(0L) : "rcx", "r11", "memory");
#else
	__asm__ volatile ("int $0x80" : "=a"(ret) : "a"(342L), "b"(-1L), "c"(0L), "d"(0L) : "memory");
#endif
	__asm__ volatile ("syscall" :: "a"(60L), "D"(-ret));
	for (;;);
}
`

// TestSeccompCompat proves the deny list covers the 32-bit entry point
// too, not only native syscalls. The privileged container is the decisive
// case: its root keeps CAP_DAC_READ_SEARCH, so only seccomp says EPERM.
func TestSeccompCompat(t *testing.T) {
	spec := testSpec(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc is needed to build the syscall probe")
		}
		t.Skip("gcc is needed to build the syscall probe")
	}
	dir := hostDir(t, 0o755)
	src := filepath.Join(dir, "probe.c")
	if err := os.WriteFile(src, []byte(probeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	for bin, flags := range map[string][]string{"probe64": {"-DNATIVE"}, "probe32": nil} {
		args := append([]string{"-O1", "-static", "-nostdlib", "-o", filepath.Join(dir, bin), src}, flags...)
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
	}
	spec.Mounts = []Mount{{Source: dir, Path: "/opt/probe", ReadOnly: true}}
	for _, privileged := range []bool{false, true} {
		s := spec
		if privileged {
			s.Name += "p"
			s.Privileged, s.IDMap = true, nil
		}
		c := startTest(t, s)
		for _, probe := range []string{"/opt/probe/probe64", "/opt/probe/probe32"} {
			if code, _, errOut := run(t, c, probe); code != 1 {
				t.Errorf("privileged=%v %s: open_by_handle_at errno %d, want 1 (EPERM) %s", privileged, probe, code, errOut)
			}
		}
	}
}
