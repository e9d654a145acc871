package lxcdriver

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/testimage"
)

// A probe and what the deny list must make of it. open_by_handle_at(-1,
// NULL, 0) fails with EFAULT without the filter, EPERM with it. (kexec
// and the module syscalls would not tell: this kernel has neither kexec
// nor module support and answers ENOSYS itself.)
var probes = []struct {
	name   string
	native bool
	nr     uint32
	errno  int
}{
	{"obh64", true, 304, 1},
	{"obh32", false, 342, 1},
}

// TestSeccompCompat proves the deny list of an exec'd process covers the
// 32-bit entry points too, not only native syscalls, and that forced
// unmounts are refused while plain ones are not.
func TestSeccompCompat(t *testing.T) {
	spec := testSpec(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc is needed to build the syscall probe")
		}
		t.Skip("gcc is needed to build the syscall probe")
	}
	// The probes go into the shared rootfs's /tmp under a name of this
	// test's own, so the test needs no disk device.
	dir, err := os.MkdirTemp(filepath.Join(spec.Rootfs, "tmp"), "probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	inside := "/tmp/" + filepath.Base(dir) + "/"
	for _, p := range probes {
		if err := testimage.BuildSyscallProbe(filepath.Join(dir, p.name), int(p.nr), p.native); err != nil {
			t.Fatal(err)
		}
	}
	for _, privileged := range []bool{false, true} {
		s := spec
		if privileged {
			s.Name += "p"
			s.Privileged, s.IDMap = true, nil
		}
		c := startTest(t, s)
		for _, p := range probes {
			if code, _, errOut := run(t, c, inside+p.name); code != p.errno {
				t.Errorf("privileged=%v %s: errno %d, want %d %s", privileged, p.name, code, p.errno, errOut)
			}
		}
		// umount2 with MNT_FORCE: EACCES from the filter before the
		// path is even looked up; without it, the lookup fails.
		if _, _, errOut := run(t, c, "umount", "-f", "/nonexistent"); !strings.Contains(errOut, "Permission denied") {
			t.Errorf("privileged=%v umount -f: %q", privileged, errOut)
		}
		if _, _, errOut := run(t, c, "umount", "/nonexistent"); strings.Contains(errOut, "Permission denied") || errOut == "" {
			t.Errorf("privileged=%v plain umount: %q", privileged, errOut)
		}
	}
}

// bpfRun interprets the subset of classic BPF the filter uses on one
// seccomp_data.
func bpfRun(t *testing.T, prog []unix.SockFilter, arch, nr uint32, arg1 uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], arch)
	binary.LittleEndian.PutUint64(data[24:], arg1)
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			hit := a == in.K
			if in.Code&0xf0 == unix.BPF_JSET {
				hit = a&in.K != 0
			}
			if hit {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: unexpected opcode %#x", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// TestSeccompFilter checks the generated BPF program rule by rule on
// every ABI, including x32, which no probe here can reach.
func TestSeccompFilter(t *testing.T) {
	prog, err := seccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	errno := func(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }
	type abi struct {
		name string
		arch uint32
		nr   func(deniedSyscall) uint32
	}
	abis := []abi{
		{"x86_64", unix.AUDIT_ARCH_X86_64, func(s deniedSyscall) uint32 { return s.amd64 }},
		{"x32", unix.AUDIT_ARCH_X86_64, func(s deniedSyscall) uint32 { return s.x32 }},
		{"i386", unix.AUDIT_ARCH_I386, func(s deniedSyscall) uint32 { return s.i386 }},
	}
	for _, a := range abis {
		for _, s := range deniedSyscalls {
			if nr := a.nr(s); nr != noSyscall {
				if got := bpfRun(t, prog, a.arch, nr, 0); got != errno(s.errno) {
					t.Errorf("%s %s: %#x, want errno %d", a.name, s.name, got, s.errno)
				}
			}
		}
		nr := a.nr(umount2)
		if got := bpfRun(t, prog, a.arch, nr, unix.MNT_FORCE|unix.MNT_DETACH); got != errno(unix.EACCES) {
			t.Errorf("%s forced umount2: %#x", a.name, got)
		}
		for _, flags := range []uint64{0, unix.MNT_DETACH} {
			if got := bpfRun(t, prog, a.arch, nr, flags); got != unix.SECCOMP_RET_ALLOW {
				t.Errorf("%s umount2 flags %d: %#x", a.name, flags, got)
			}
		}
	}
	// Everything else passes: read, and numbers of denied calls on
	// another ABI (i386 320 is utimensat, x86_64 283 timerfd_create).
	for _, c := range []struct{ arch, nr uint32 }{
		{unix.AUDIT_ARCH_X86_64, 0}, {unix.AUDIT_ARCH_I386, 3}, {unix.AUDIT_ARCH_I386, 320}, {unix.AUDIT_ARCH_X86_64, 283},
		{unix.AUDIT_ARCH_X86_64, x32Bit + 246},
	} {
		if got := bpfRun(t, prog, c.arch, c.nr, 0); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("arch %#x nr %d: %#x, want allow", c.arch, c.nr, got)
		}
	}
	if got := bpfRun(t, prog, unix.AUDIT_ARCH_AARCH64, 0, 0); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("unknown arch: %#x", got)
	}
}

// TestSeccompNumbers compares the table with the kernel's headers.
func TestSeccompNumbers(t *testing.T) {
	headers := map[string]string{"amd64": "unistd_64.h", "i386": "unistd_32.h", "x32": "unistd_x32.h"}
	nrs := map[string]map[string]uint32{}
	re := regexp.MustCompile(`(?m)^#define __NR_(\w+) (?:\(__X32_SYSCALL_BIT \+ )?(\d+)\)?$`)
	for abi, h := range headers {
		b, err := os.ReadFile("/usr/include/x86_64-linux-gnu/asm/" + h)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
		nrs[abi] = map[string]uint32{}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			n, _ := strconv.ParseUint(m[2], 10, 32)
			if abi == "x32" {
				n += x32Bit
			}
			nrs[abi][m[1]] = uint32(n)
		}
	}
	for _, s := range append(deniedSyscalls, umount2) {
		for abi, got := range map[string]uint32{"amd64": s.amd64, "i386": s.i386, "x32": s.x32} {
			want, ok := nrs[abi][s.name]
			if !ok {
				want = noSyscall
			}
			if got != want {
				t.Errorf("%s on %s: table %d, headers %d", s.name, abi, got, want)
			}
		}
	}
}

// TestSeccompPolicy: the liblxc policy rendered from the table is the
// one init has always been started with.
func TestSeccompPolicy(t *testing.T) {
	want := "2\ndenylist\nreject_force_umount\n[all]\nkexec_load errno 38\nkexec_file_load errno 38\n" +
		"open_by_handle_at errno 1\ninit_module errno 38\nfinit_module errno 38\ndelete_module errno 38\n"
	if seccompPolicy != want {
		t.Fatalf("policy:\n%s", seccompPolicy)
	}
}
