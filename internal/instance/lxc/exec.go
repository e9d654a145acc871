package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// ExecSpec is a non-interactive command to run in a running container.
// The instance layer supplies LXD's defaults (PATH, HOME, cwd /root, ...);
// here an empty Cwd means "/". Nil stdio is /dev/null.
type ExecSpec struct {
	Command []string
	Env     []string // KEY=value; nothing else is inherited
	UID     int
	GID     int
	Cwd     string

	Stdin, Stdout, Stderr *os.File
}

// Process is a command started by Exec.
type Process struct {
	cl      *execClient
	id      uint64
	pid     int
	replies chan execMsg

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
	if spec.Cwd == "" {
		spec.Cwd = "/"
	}
	if !c.running() {
		return nil, ErrNotRunning
	}
	stdio := []*os.File{spec.Stdin, spec.Stdout, spec.Stderr}
	for i, f := range stdio {
		if f == nil {
			null, err := devNull()
			if err != nil {
				return nil, err
			}
			stdio[i] = null
		}
	}
	cl, err := execServer()
	if err != nil {
		return nil, err
	}
	id, replies, err := cl.request(execMsg{
		LXCPath: c.spec.LXCPath, Name: c.spec.Name,
		Command: spec.Command, Env: spec.Env, UID: spec.UID, GID: spec.GID, Cwd: spec.Cwd,
	}, stdio)
	runtime.KeepAlive(stdio) // the fds must stay open until sent
	if err != nil {
		return nil, err
	}
	m := <-replies
	if m.Error != "" {
		return nil, fmt.Errorf("exec: %s", m.Error)
	}
	return &Process{cl: cl, id: id, pid: m.PID, replies: replies}, nil
}

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
			p.err = errors.New("exec: " + m.Error)
		case m.Exit == nil:
			p.err = errors.New("exec: no exit code")
		default:
			p.code = *m.Exit
		}
	})
	return p.code, p.err
}
