package lxcdriver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
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
	pid    int
	helper *exec.Cmd
	ctrl   *os.File

	once sync.Once
	code int
	err  error
}

// Exec starts spec.Command in the container and returns once it runs.
// The command's stdio are the given files themselves, passed down through
// the helper without copying.
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
	req, err := json.Marshal(execRequest{Command: spec.Command, Env: spec.Env, UID: spec.UID, GID: spec.GID, Cwd: spec.Cwd})
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// Non-blocking makes our end pollable by the Go runtime.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	ctrl := os.NewFile(uintptr(fds[0]), "exec-control")
	child := os.NewFile(uintptr(fds[1]), "exec-control-child")
	defer child.Close()

	cmd := exec.Command(selfExe, helperExec, c.spec.LXCPath, c.spec.Name)
	cmd.Env = helperEnv
	cmd.ExtraFiles = []*os.File{child}
	// Assigning a typed nil *os.File would hand os/exec a non-nil
	// interface; leave the field unset for /dev/null instead.
	if spec.Stdin != nil {
		cmd.Stdin = spec.Stdin
	}
	if spec.Stdout != nil {
		cmd.Stdout = spec.Stdout
	}
	if spec.Stderr != nil {
		cmd.Stderr = spec.Stderr
	}
	if err := cmd.Start(); err != nil {
		ctrl.Close()
		return nil, err
	}
	p := &Process{helper: cmd, ctrl: ctrl}
	if _, err := ctrl.Write(req); err != nil {
		p.abort()
		return nil, fmt.Errorf("sending exec request: %w", err)
	}
	m, err := p.read()
	if err != nil {
		p.abort()
		return nil, err
	}
	p.pid = m.PID
	return p, nil
}

// PID is the command's pid in the host's pid namespace.
func (p *Process) PID() int { return p.pid }

// Signal delivers sig to the command. The helper holds a pidfd for it, so
// a late signal can never reach an unrelated process that reused the pid.
func (p *Process) Signal(sig syscall.Signal) error {
	b, _ := json.Marshal(execSignal{Signal: int(sig)})
	if _, err := p.ctrl.Write(b); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	return nil
}

// Wait waits for the command and returns its exit code (128+N when killed
// by signal N). It may be called more than once.
func (p *Process) Wait() (int, error) {
	p.once.Do(func() {
		m, err := p.read()
		if err == nil && m.Exit == nil {
			err = errors.New("exec helper sent no exit code")
		}
		if err != nil {
			p.err = err
			p.abort()
			return
		}
		p.code = *m.Exit
		p.ctrl.Close()
		if err := p.helper.Wait(); err != nil {
			p.err = fmt.Errorf("exec helper: %w", err)
		}
	})
	return p.code, p.err
}

func (p *Process) read() (execMessage, error) {
	var m execMessage
	buf := make([]byte, 4096)
	n, err := p.ctrl.Read(buf)
	if err != nil {
		return m, fmt.Errorf("exec helper died: %w", err)
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return m, err
	}
	if m.Error != "" {
		return m, fmt.Errorf("exec: %s", m.Error)
	}
	return m, nil
}

func (p *Process) abort() {
	p.ctrl.Close()
	p.helper.Process.Kill()
	p.helper.Wait()
}
