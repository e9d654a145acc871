package testimage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// probeSource makes syscall NR with first argument -1 (the rest 0)
// through the native syscall instruction (built with -DNATIVE) or the
// i386 compat entry int $0x80, and exits with the errno it got back. It
// needs no libc, so the static binary runs in any container.
const probeSource = `
void _start(void) {
	long ret;
#ifdef NATIVE
	register long r10 __asm__("r10") = 0;
	__asm__ volatile ("syscall" : "=a"(ret) : "a"((long)NR), "D"(-1L), "S"(0L), "d"(0L), "r"(r10) : "rcx", "r11", "memory");
#else
	__asm__ volatile ("int $0x80" : "=a"(ret) : "a"((long)NR), "b"(-1L), "c"(0L), "d"(0L), "S"(0L) : "memory");
#endif
	__asm__ volatile ("syscall" :: "a"(60L), "D"(-ret));
	for (;;);
}
`

// BuildSyscallProbe compiles, with the host's gcc, a static x86-64 binary
// at path that makes syscall nr (through the native entry, or the i386
// one when native is false) and exits with the errno it got: what a
// seccomp test runs inside a container to see what the filter allows.
func BuildSyscallProbe(path string, nr int, native bool) error {
	src := path + ".c"
	if err := os.WriteFile(src, []byte(probeSource), 0o644); err != nil {
		return err
	}
	defer os.Remove(src)
	args := []string{"-O1", "-static", "-nostdlib", "-o", path, src, fmt.Sprintf("-DNR=%d", nr)}
	if native {
		args = append(args, "-DNATIVE")
	}
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc for %s: %v: %s", filepath.Base(path), err, out)
	}
	return nil
}
