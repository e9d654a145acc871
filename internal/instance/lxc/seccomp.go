package lxcdriver

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// deniedSyscall is one entry of the container's seccomp deny list. The
// same table renders the liblxc policy that confines init (and so every
// process it forks) and the BPF filter the exec attach loads itself, so
// the two cannot drift apart.
type deniedSyscall struct {
	name  string
	errno unix.Errno
	// Numbers per x86 ABI; noSyscall where the ABI lacks the call.
	amd64, i386, x32 uint32
}

const noSyscall = ^uint32(0)

// x32 syscalls are the x86_64 ones with this bit set, apart from a few
// compat entry points numbered from 512.
const x32Bit = 0x40000000

var deniedSyscalls = []deniedSyscall{
	{"kexec_load", unix.ENOSYS, 246, 283, x32Bit + 528},
	{"kexec_file_load", unix.ENOSYS, 320, noSyscall, x32Bit + 320},
	{"open_by_handle_at", unix.EPERM, 304, 342, x32Bit + 304},
	{"init_module", unix.ENOSYS, 175, 128, x32Bit + 175},
	{"finit_module", unix.ENOSYS, 313, 350, x32Bit + 313},
	{"delete_module", unix.ENOSYS, 176, 129, x32Bit + 176},
}

// Forced unmounts (umount2 with MNT_FORCE) are refused with EACCES: they
// would let the container cut the host's view of a shared filesystem.
var umount2 = deniedSyscall{"umount2", unix.EACCES, 166, 52, x32Bit + 166}

// seccompPolicy is liblxc's v2 policy format. [all] applies the rules to
// the native and every compat ABI (i386 and x32 on x86_64), so the 32-bit
// entry points to the same syscalls are closed as well.
var seccompPolicy = func() string {
	var b strings.Builder
	b.WriteString("2\ndenylist\nreject_force_umount\n[all]\n")
	for _, s := range deniedSyscalls {
		fmt.Fprintf(&b, "%s errno %d\n", s.name, int(s.errno))
	}
	return b.String()
}()

// seccomp_data offsets and the audit arch values of the x86 ABIs.
const (
	seccompNr    = 0
	seccompArch  = 4
	seccompArg1  = 24 // low 32 bits of args[1] (little endian)
	auditX86_64  = unix.AUDIT_ARCH_X86_64
	auditI386    = unix.AUDIT_ARCH_I386
	retAllow     = unix.SECCOMP_RET_ALLOW
	retKill      = unix.SECCOMP_RET_KILL_PROCESS
	retErrnoBase = unix.SECCOMP_RET_ERRNO
)

func bpfStmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func bpfJump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// seccompFilter is the BPF program equivalent to seccompPolicy for the
// x86 ABIs (an x86_64 kernel runs only those). Any other arch value is
// killed rather than let through unchecked.
func seccompFilter() ([]unix.SockFilter, error) {
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	// block checks the syscall number against every rule of one arch.
	block := func(nrs func(deniedSyscall) []uint32) []unix.SockFilter {
		p := []unix.SockFilter{bpfStmt(ld, seccompNr)}
		for _, s := range deniedSyscalls {
			for _, nr := range nrs(s) {
				if nr != noSyscall {
					p = append(p, bpfJump(jeq, nr, 0, 1), bpfStmt(ret, retErrnoBase|uint32(s.errno)))
				}
			}
		}
		for _, nr := range nrs(umount2) {
			p = append(p,
				bpfJump(jeq, nr, 0, 4),
				bpfStmt(ld, seccompArg1),
				bpfJump(jset, unix.MNT_FORCE, 0, 1),
				bpfStmt(ret, retErrnoBase|uint32(umount2.errno)),
				bpfStmt(ld, seccompNr))
		}
		return append(p, bpfStmt(ret, retAllow))
	}
	b64 := block(func(s deniedSyscall) []uint32 { return []uint32{s.amd64, s.x32} })
	b32 := block(func(s deniedSyscall) []uint32 { return []uint32{s.i386} })
	if len(b64) > 255 || len(b32) > 255 {
		return nil, fmt.Errorf("seccomp filter: a block of %d/%d instructions exceeds a BPF jump", len(b64), len(b32))
	}
	p := []unix.SockFilter{bpfStmt(ld, seccompArch), bpfJump(jeq, auditX86_64, 0, uint8(len(b64)))}
	p = append(p, b64...)
	p = append(p, bpfJump(jeq, auditI386, 0, uint8(len(b32))))
	p = append(p, b32...)
	return append(p, bpfStmt(ret, retKill)), nil
}
