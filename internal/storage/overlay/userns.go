package overlay

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/idmap"
)

// Userns returns an O_RDONLY fd of a new user namespace whose uid and gid
// maps are set, for mount_setattr(MOUNT_ATTR_IDMAP). The caller closes it.
//
// A namespace only exists with a process in it, and a Go program cannot
// fork without exec. So the child is /proc/self/exe started under
// PTRACE_TRACEME: the kernel stops it right after execve, before it runs a
// single instruction of the new image. By then the Go runtime has written
// its maps (the parent does that while the child waits), the namespace fd
// is opened, and the child is killed and reaped. The fd keeps the
// namespace alive.
func Userns(set idmap.Set) (int, error) {
	var uids, gids []syscall.SysProcIDMap
	for _, e := range set {
		m := syscall.SysProcIDMap{ContainerID: int(e.Nsid), HostID: int(e.Hostid), Size: int(e.Maprange)}
		if e.Isuid {
			uids = append(uids, m)
		}
		if e.Isgid {
			gids = append(gids, m)
		}
	}
	if len(uids) == 0 || len(gids) == 0 {
		return -1, fmt.Errorf("%w: a user namespace needs uid and gid entries", idmap.ErrInvalid)
	}
	// The tracer is the forking thread: keep it for the child's life.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("/proc/self/exe")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: uids,
		GidMappings: gids,
		Ptrace:      true,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("user namespace helper: %w", err)
	}
	pid := cmd.Process.Pid
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	_ = cmd.Process.Kill()
	// Reaped here rather than by cmd.Wait: a traced child may first report
	// its exec stop, which Wait would take for its end.
	for {
		var ws unix.WaitStatus
		if _, werr := unix.Wait4(pid, &ws, 0, nil); werr == unix.EINTR {
			continue
		} else if werr != nil || ws.Exited() || ws.Signaled() {
			break
		}
	}
	_ = cmd.Process.Release()
	if err != nil {
		return -1, fmt.Errorf("user namespace of the helper: %w", err)
	}
	return fd, nil
}
