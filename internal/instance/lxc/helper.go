package lxcdriver

import (
	"fmt"
	"os"

	lxc "github.com/lxc/go-lxc"
)

// Helper sub-commands, argv[1] of the re-executed binary.
const (
	helperStart      = "forkstart"
	helperExecServer = "forkexecd"
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
	case helperExecServer:
		os.Exit(serveExec())
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
