package lxcdriver

/*
#include <stdlib.h>
#include "attach.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capNumbers maps the names of config.go's drop lists to capability
// numbers, which the attach passes to PR_CAPBSET_DROP.
var capNumbers = map[string]int{
	"mac_admin":    unix.CAP_MAC_ADMIN,
	"mac_override": unix.CAP_MAC_OVERRIDE,
	"sys_module":   unix.CAP_SYS_MODULE,
	"sys_rawio":    unix.CAP_SYS_RAWIO,
	"sys_time":     unix.CAP_SYS_TIME,
	"sys_boot":     unix.CAP_SYS_BOOT,
	"syslog":       unix.CAP_SYSLOG,
}

// capDrops is the bounding set init gets from lxc.cap.drop, as numbers.
func capDrops(privileged bool) ([]int, error) {
	names := capDropAll
	if privileged {
		names = append(append([]string(nil), capDropAll...), capDropPrivileged...)
	}
	nums := make([]int, 0, len(names))
	for _, n := range names {
		c, ok := capNumbers[n]
		if !ok {
			return nil, fmt.Errorf("capability %q has no number", n)
		}
		nums = append(nums, c)
	}
	return nums, nil
}

// attachNamespaces are init's namespaces an exec joins; privileged
// containers share the host's user namespace, and setns into one's own
// user namespace is refused.
func attachNamespaces(privileged bool) int {
	ns := unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
	if !privileged {
		ns |= unix.CLONE_NEWUSER
	}
	return ns
}

// attachRequest is one exec as the server hands it to the C attach.
type attachRequest struct {
	pidfd      int
	privileged bool
	procs      []string // cgroup.procs files to join
	capDrop    []int
	argv, env  []string
	path, cwd  string
	uid, gid   int
	stdio      [3]int
	pty        bool
	rows, cols uint16
}

var attachStages = map[C.int]string{
	C.MOAT_SOCKET:   "socketpair",
	C.MOAT_FORK:     "fork",
	C.MOAT_CGROUP:   "join the container's cgroups",
	C.MOAT_SETNS:    "enter the container's namespaces",
	C.MOAT_CAPS:     "drop capabilities",
	C.MOAT_SECCOMP:  "load the seccomp filter",
	C.MOAT_IDS:      "switch to the requested uid/gid",
	C.MOAT_CWD:      "change to the working directory",
	C.MOAT_PTMX:     "open the container's /dev/ptmx",
	C.MOAT_NOT_PTMX: "the container's /dev/ptmx is not a devpts multiplexer",
	C.MOAT_PTY:      "set up the terminal",
	C.MOAT_STDIO:    "set up stdio",
	C.MOAT_LOST:     "the attaching process died",
}

// cFilter is the seccomp filter in C memory, built once per server.
type cFilter struct {
	prog *C.struct_sock_filter
	len  C.ushort
}

var seccompProgram = sync.OnceValues(func() (cFilter, error) {
	f, err := seccompFilter()
	if err != nil {
		return cFilter{}, err
	}
	size := C.size_t(len(f)) * C.size_t(unsafe.Sizeof(unix.SockFilter{}))
	p := (*C.struct_sock_filter)(C.malloc(size))
	copy(unsafe.Slice((*unix.SockFilter)(unsafe.Pointer(p)), len(f)), f)
	return cFilter{p, C.ushort(len(f))}, nil
})

// cStrings is a NULL-terminated array of C strings; free with freeCStrings.
func cStrings(ss []string) **C.char {
	arr := (**C.char)(C.calloc(C.size_t(len(ss)+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	s := unsafe.Slice(arr, len(ss)+1)
	for i, x := range ss {
		s[i] = C.CString(x)
	}
	return arr
}

func freeCStrings(arr **C.char) {
	for _, p := range unsafe.Slice(arr, 1<<20) {
		if p == nil {
			break
		}
		C.free(unsafe.Pointer(p))
	}
	C.free(unsafe.Pointer(arr))
}

// startedAttach is an attach whose first child runs. The request stays
// in C memory until finish: that child reads it from this process's
// memory.
type startedAttach struct {
	req   *C.struct_moat_attach
	sock  C.int
	child C.pid_t
	stack unsafe.Pointer
}

// startAttach starts the attaching child. Calls must not overlap (see
// attach.h); the server makes them from its main loop only.
func startAttach(r *attachRequest) (*startedAttach, error) {
	filter, err := seccompProgram()
	if err != nil {
		return nil, err
	}
	a := (*C.struct_moat_attach)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_moat_attach{}))))
	a.pidfd = C.int(r.pidfd)
	a.nsflags = C.int(attachNamespaces(r.privileged))
	a.cgroup_procs = cStrings(r.procs)
	if len(r.capDrop) > 0 {
		caps := (*C.int)(C.malloc(C.size_t(len(r.capDrop)) * C.size_t(unsafe.Sizeof(C.int(0)))))
		for i, c := range r.capDrop {
			unsafe.Slice(caps, len(r.capDrop))[i] = C.int(c)
		}
		a.cap_drop, a.n_cap_drop = caps, C.int(len(r.capDrop))
	}
	a.filter, a.filter_len = filter.prog, filter.len
	a.argv = cStrings(r.argv)
	a.envp = cStrings(r.env)
	a.path = C.CString(r.path)
	a.cwd = C.CString(r.cwd)
	a.uid, a.gid = C.uid_t(r.uid), C.gid_t(r.gid)
	for i, fd := range r.stdio {
		a.stdio[i] = C.int(fd)
	}
	if r.pty {
		a.pty = 1
	}
	a.rows, a.cols = C.ushort(r.rows), C.ushort(r.cols)

	st := &startedAttach{req: a}
	var res C.struct_moat_attach_result
	st.sock = C.moat_attach_start(a, &res, &st.child, &st.stack)
	if st.sock < 0 {
		st.free()
		return nil, attachError(&res)
	}
	return st, nil
}

func (st *startedAttach) free() {
	a := st.req
	freeCStrings(a.cgroup_procs)
	freeCStrings(a.argv)
	freeCStrings(a.envp)
	C.free(unsafe.Pointer(a.cap_drop))
	C.free(unsafe.Pointer(a.path))
	C.free(unsafe.Pointer(a.cwd))
	C.free(unsafe.Pointer(a))
}

// finish waits until the command runs (or the attach failed) and returns
// its pid; it is a child of this process. With a terminal, master is the
// pty's master side. A container can make this take long (an exec from a
// FUSE mount it serves, say), so it runs apart from the server's loop.
func (st *startedAttach) finish() (pid int, master *os.File, err error) {
	var res C.struct_moat_attach_result
	C.moat_attach_finish(st.sock, st.child, st.stack, st.req.pty, &res)
	st.free()
	if res.stage != C.MOAT_OK {
		return 0, nil, attachError(&res)
	}
	if res.master >= 0 {
		master = os.NewFile(uintptr(res.master), "ptmx")
	}
	return int(res.pid), master, nil
}

func attachError(res *C.struct_moat_attach_result) error {
	return fmt.Errorf("%s: %w", attachStages[res.stage], syscall.Errno(res.err))
}
