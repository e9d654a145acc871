package lxcdriver

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	lxc "github.com/lxc/go-lxc"
)

// Helper sub-commands, argv[1] of the re-executed binary.
const (
	helperStart = "forkstart"
	helperExec  = "forkexec"
)

// selfExe re-executes the running binary even if it was replaced on disk
// by an upgrade since the daemon started.
const selfExe = "/proc/self/exe"

// helperEnv is the whole environment of a helper. PATH is empty on
// purpose: when new[ug]idmap are installed liblxc insists on using them
// even for root, and they refuse every range /etc/subuid does not list for
// root, including the kernel-default range the idmap package picks when
// subuid has no root entry. Root can write the maps directly; which ranges
// are allowed is decided by the idmap package, not by shadow.
var helperEnv = []string{"PATH="}

// RunHelper must be the first thing main does:
//
//	func main() {
//		lxcdriver.RunHelper(os.Args)
//		...
//	}
//
// If args is a helper invocation it runs it and exits the process with the
// helper's status (it never returns); otherwise it returns false at once.
func RunHelper(args []string) (handled bool) {
	if len(args) < 2 {
		return false
	}
	switch args[1] {
	case helperStart:
		os.Exit(forkStart(args[2:]))
	case helperExec:
		os.Exit(forkExec(args[2:]))
	}
	return false
}

// forkStart: forkstart <lxcpath> <name>. liblxc daemonizes the monitor,
// points its stdio at /dev/null and closes inherited fds, so the caller's
// pipes see EOF when this process exits.
func forkStart(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: forkstart LXCPATH NAME")
		return 2
	}
	c, err := lxc.NewContainer(args[1], args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := c.WantCloseAllFds(true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// execRequest travels over the control socket, not argv: argv is world
// readable in /proc and the environment may carry secrets.
type execRequest struct {
	Command []string
	Env     []string
	UID     int
	GID     int
	Cwd     string
}

// execMessage is what the helper reports: the attached pid once running,
// then the exit code, or an error instead of either.
type execMessage struct {
	PID   int    `json:",omitempty"`
	Exit  *int   `json:",omitempty"`
	Error string `json:",omitempty"`
}

// execSignal asks the helper to signal the attached process.
type execSignal struct {
	Signal int
}

// forkExec: forkexec <lxcpath> <name>, with the command's stdio on fds 0-2
// and a SOCK_SEQPACKET control socket on fd 3.
func forkExec(args []string) int {
	ctrl := os.NewFile(3, "control")
	if len(args) != 2 || ctrl == nil {
		fmt.Fprintln(os.Stderr, "usage: forkexec LXCPATH NAME (control socket on fd 3)")
		return 2
	}
	// The attached command must not inherit a socket into the daemon.
	syscall.CloseOnExec(3)
	report := func(m execMessage) {
		b, _ := json.Marshal(m)
		ctrl.Write(b) // the daemon may be gone; nothing to do about it
	}
	buf := make([]byte, 1<<20)
	n, err := ctrl.Read(buf)
	if err != nil {
		report(execMessage{Error: "reading request: " + err.Error()})
		return 1
	}
	var req execRequest
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		report(execMessage{Error: "decoding request: " + err.Error()})
		return 1
	}
	pid, err := attach(args[0], args[1], req)
	if err != nil {
		report(execMessage{Error: err.Error()})
		return 1
	}
	// FindProcess holds a pidfd, so signals cannot hit a recycled pid.
	proc, err := os.FindProcess(pid)
	if err != nil {
		report(execMessage{Error: err.Error()})
		return 1
	}
	report(execMessage{PID: pid})

	go forwardSignals(ctrl, proc)
	st, err := proc.Wait()
	if err != nil {
		report(execMessage{Error: err.Error()})
		return 1
	}
	code := st.ExitCode()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal()) // shell convention, as LXD reports it
	}
	report(execMessage{Exit: &code})
	return 0
}

func attach(lxcpath, name string, req execRequest) (int, error) {
	c, err := lxc.NewContainer(name, lxcpath)
	if err != nil {
		return 0, err
	}
	opts := lxc.AttachOptions{
		Namespaces: -1,
		Arch:       -1,
		Cwd:        req.Cwd,
		UID:        req.UID,
		GID:        req.GID,
		ClearEnv:   true,
		Env:        req.Env,
		StdinFd:    0,
		StdoutFd:   1,
		StderrFd:   2,
	}
	pid, err := c.RunCommandNoWait(req.Command, opts)
	if err != nil {
		return 0, fmt.Errorf("attach to %s: %w", name, err)
	}
	return pid, nil
}

func forwardSignals(ctrl *os.File, proc *os.Process) {
	buf := make([]byte, 256)
	for {
		n, err := ctrl.Read(buf)
		if err != nil {
			return
		}
		var s execSignal
		if json.Unmarshal(buf[:n], &s) != nil || s.Signal <= 0 {
			continue
		}
		// Signalling a process that already exited is not an error worth
		// reporting, and stderr belongs to the command.
		_ = proc.Signal(syscall.Signal(s.Signal))
	}
}
