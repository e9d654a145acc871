package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecSpec is a command to run in a running container. The instance layer
// supplies LXD's defaults (PATH, HOME, cwd /root, ...); here an empty Cwd
// means "/". PATH from Env is where the command is looked up.
type ExecSpec struct {
	Command []string
	Env     []string // KEY=value; nothing else is inherited
	UID     int
	GID     int
	Cwd     string

	// Stdin, Stdout and Stderr are the command's stdio; nil is /dev/null.
	Stdin, Stdout, Stderr *os.File

	// Terminal gives the command a new pty of the container's own devpts
	// instead of the stdio files, of Rows x Cols if both are set; the
	// Process's Terminal is its master side.
	Terminal   bool
	Rows, Cols uint16
}

// Process is a command started by Exec.
type Process struct {
	cl      *execClient
	id      uint64
	pid     int
	replies chan execMsg
	master  *os.File

	once sync.Once
	code int
	err  error
}

var devNull = sync.OnceValues(func() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_RDWR, 0) })

// Exec starts spec.Command in the container and returns once it runs.
// The command gets the given files themselves as its stdio: no copying
// happens in the daemon or the helper.
func (c *Container) Exec(spec ExecSpec) (*Process, error) {
	if len(spec.Command) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrInvalidSpec)
	}
	for _, s := range append(append([]string{spec.Cwd}, spec.Command...), spec.Env...) {
		if strings.Contains(s, "\x00") {
			return nil, fmt.Errorf("%w: NUL byte in command, environment or cwd", ErrInvalidSpec)
		}
	}
	if spec.Cwd == "" {
		spec.Cwd = "/"
	}
	capDrop, err := capDrops(c.spec.Privileged)
	if err != nil {
		return nil, err
	}
	pidfd, procs, err := c.attachTarget()
	if err != nil {
		return nil, err
	}
	defer pidfd.Close()
	files := []*os.File{pidfd}
	if !spec.Terminal {
		for _, f := range []*os.File{spec.Stdin, spec.Stdout, spec.Stderr} {
			if f == nil {
				if f, err = devNull(); err != nil {
					return nil, err
				}
			}
			files = append(files, f)
		}
	}
	cl, err := execServer()
	if err != nil {
		return nil, err
	}
	id, replies, err := cl.request(execMsg{
		Name: c.spec.Name, Privileged: c.spec.Privileged, Cgroups: procs, CapDrop: capDrop,
		Command: spec.Command, Env: spec.Env, UID: spec.UID, GID: spec.GID, Cwd: spec.Cwd,
		PTY: spec.Terminal, Rows: spec.Rows, Cols: spec.Cols,
	}, files)
	runtime.KeepAlive(files) // the fds must stay open until sent
	if err != nil {
		return nil, err
	}
	m := <-replies
	if err := m.err(); err != nil {
		return nil, err
	}
	if spec.Terminal && m.master == nil {
		// The server never replies so; it cannot be waited for either.
		return nil, errors.New("exec: no terminal received")
	}
	return &Process{cl: cl, id: id, pid: m.PID, replies: replies, master: m.master}, nil
}

// attachTarget returns a pidfd of init and the cgroup.procs files of its
// cgroups, from the run information cached on the handle; only the first
// exec (or State) of a run asks the monitor.
func (c *Container) attachTarget() (*os.File, []string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.dropIfClosed()
	if c.live != nil && !c.live.alive() {
		c.forgetLive()
	}
	if c.live == nil {
		l, err := c.handle()
		if err != nil {
			return nil, nil, err
		}
		if !l.Running() {
			return nil, nil, ErrNotRunning
		}
		if c.live = c.learnLive(l); c.live == nil {
			return nil, nil, fmt.Errorf("%w: init or its cgroups not found", ErrNotRunning)
		}
	}
	fd, err := unix.FcntlInt(c.live.pidfd.Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, nil, err
	}
	var procs []string
	for _, d := range c.live.dirs {
		if d != "" {
			procs = append(procs, filepath.Join(d, "cgroup.procs"))
		}
	}
	return os.NewFile(uintptr(fd), "pidfd"), procs, nil
}

// Terminal is the master side of the command's pty (ExecSpec.Terminal),
// nil otherwise. The caller owns it and closes it when done.
func (p *Process) Terminal() *os.File { return p.master }

// PID is the command's pid in the host's pid namespace.
func (p *Process) PID() int { return p.pid }

// Signal delivers sig to the command. The server holds a pidfd for it, so
// a late signal never reaches an unrelated process that reused the pid.
func (p *Process) Signal(sig syscall.Signal) error {
	return p.cl.signal(p.id, sig)
}

// Wait waits for the command and returns its exit code (128+N when killed
// by signal N). It may be called more than once.
func (p *Process) Wait() (int, error) {
	p.once.Do(func() {
		m := <-p.replies
		switch {
		case m.Error != "":
			p.err = m.err()
		case m.Exit == nil:
			p.err = errors.New("exec: no exit code")
		default:
			p.code = *m.Exit
		}
	})
	return p.code, p.err
}
