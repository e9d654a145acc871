package lxcdriver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// The exec server ("forkexecd") is a long-lived helper serving every Exec
// of the daemon over one SOCK_SEQPACKET socket. Starting a helper per exec
// would cost more than the attach itself (a process start is ~2-4 ms on
// this kind of machine, the attach ~3.5 ms). The server makes liblxc calls
// from its main loop only, one at a time, so no other thread is inside
// liblxc when attach forks; its other goroutines only wait for children.
//
// Requests and replies are one JSON execMsg per packet. An exec request
// carries the command's stdin, stdout and stderr as SCM_RIGHTS; the
// server never copies their data. The command's details travel in the
// packet rather than argv, which is world readable in /proc.

// execMsg is both request (daemon to server) and reply (server to daemon).
type execMsg struct {
	ID uint64

	// exec request
	LXCPath string   `json:",omitempty"`
	Name    string   `json:",omitempty"`
	Command []string `json:",omitempty"`
	Env     []string `json:",omitempty"`
	UID     int      `json:",omitempty"`
	GID     int      `json:",omitempty"`
	Cwd     string   `json:",omitempty"`

	// signal request
	Signal int `json:",omitempty"`

	// replies: PID once started, then Exit; or Error instead of either
	PID   int    `json:",omitempty"`
	Exit  *int   `json:",omitempty"`
	Error string `json:",omitempty"`
}

// final reports whether m ends the exchange for its ID.
func (m execMsg) final() bool { return m.Exit != nil || m.Error != "" }

const maxExecMsg = 1 << 20

// serveExec is the server's main: the socket is fd 3. It returns when the
// daemon closes its end (or dies) and every command it started has been
// reaped.
func serveExec() int {
	f := os.NewFile(3, "exec-server")
	c, err := net.FileConn(f) // a CLOEXEC duplicate: commands must not inherit it
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "forkexecd:", err)
		return 1
	}
	conn := c.(*net.UnixConn)
	send := func(m execMsg) {
		b, _ := json.Marshal(m)
		conn.Write(b) // the daemon may be gone; commands are still reaped
	}

	var (
		mu    sync.Mutex
		procs = map[uint64]*os.Process{}
		wg    sync.WaitGroup
	)
	buf := make([]byte, maxExecMsg)
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			break
		}
		files := receivedFiles(oob[:oobn])
		var m execMsg
		switch {
		// The client never sends these; ignore rather than guess an ID.
		case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0, json.Unmarshal(buf[:n], &m) != nil:
		case m.Signal > 0:
			mu.Lock()
			p := procs[m.ID]
			mu.Unlock()
			if p != nil {
				// A pidfd-backed handle: never signals a recycled pid.
				p.Signal(syscall.Signal(m.Signal))
			}
		case len(m.Command) > 0 && len(files) == 3:
			p, err := attach(m, files)
			if err != nil {
				send(execMsg{ID: m.ID, Error: err.Error()})
				break
			}
			mu.Lock()
			procs[m.ID] = p
			mu.Unlock()
			send(execMsg{ID: m.ID, PID: p.Pid})
			wg.Add(1)
			go func(id uint64) {
				defer wg.Done()
				code, err := waitCode(p)
				mu.Lock()
				delete(procs, id)
				mu.Unlock()
				if err != nil {
					send(execMsg{ID: id, Error: err.Error()})
					return
				}
				send(execMsg{ID: id, Exit: &code})
			}(m.ID)
		default:
			send(execMsg{ID: m.ID, Error: "bad request"})
		}
		for _, f := range files {
			f.Close()
		}
	}
	wg.Wait()
	return 0
}

func receivedFiles(oob []byte) []*os.File {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for _, cm := range cmsgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "stdio"))
		}
	}
	return files
}

// attach starts the command; liblxc makes it a child of this process
// (CLONE_PARENT), so it can be waited for here.
func attach(m execMsg, stdio []*os.File) (*os.Process, error) {
	c, err := lxc.NewContainer(m.Name, m.LXCPath)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	pid, err := c.RunCommandNoWait(m.Command, lxc.AttachOptions{
		Namespaces: -1,
		Arch:       -1,
		Cwd:        m.Cwd,
		UID:        m.UID,
		GID:        m.GID,
		ClearEnv:   true,
		Env:        m.Env,
		StdinFd:    stdio[0].Fd(),
		StdoutFd:   stdio[1].Fd(),
		StderrFd:   stdio[2].Fd(),
	})
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", m.Name, err)
	}
	return os.FindProcess(pid)
}

// waitCode reaps p; death by signal N is reported as 128+N, the shell's
// convention and what LXD returns.
func waitCode(p *os.Process) (int, error) {
	st, err := p.Wait()
	if err != nil {
		return 0, err
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return st.ExitCode(), nil
}

// execClient is the daemon's side of one exec server.
type execClient struct {
	conn *net.UnixConn
	cmd  *exec.Cmd

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan execMsg
	dead    bool
}

var (
	clientMu sync.Mutex
	client   *execClient
)

// errServerGone is what waiting callers get if the server dies.
var errServerGone = errors.New("exec server exited")

// execServer returns the running server, starting one if there is none
// or the last one died.
func execServer() (*execClient, error) {
	clientMu.Lock()
	defer clientMu.Unlock()
	if client != nil && !client.isDead() {
		return client, nil
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "exec-client"), os.NewFile(uintptr(fds[1]), "exec-server")
	defer ours.Close()
	defer theirs.Close()
	cmd := exec.Command(selfExe, helperExecServer)
	cmd.Env = helperEnv
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr // a crashing server should say why in the daemon's log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c, err := net.FileConn(ours)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	client = &execClient{conn: c.(*net.UnixConn), cmd: cmd, pending: map[uint64]chan execMsg{}}
	go client.readLoop()
	return client, nil
}

func (cl *execClient) isDead() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.dead
}

func (cl *execClient) readLoop() {
	buf := make([]byte, 64<<10)
	for {
		n, err := cl.conn.Read(buf)
		if err != nil || n == 0 {
			break
		}
		var m execMsg
		if json.Unmarshal(buf[:n], &m) != nil {
			continue
		}
		cl.mu.Lock()
		ch := cl.pending[m.ID]
		if m.final() {
			delete(cl.pending, m.ID)
		}
		cl.mu.Unlock()
		if ch != nil {
			ch <- m // buffered for the at most two replies per ID
		}
	}
	cl.mu.Lock()
	cl.dead = true
	for id, ch := range cl.pending {
		ch <- execMsg{ID: id, Error: errServerGone.Error()}
		delete(cl.pending, id)
	}
	cl.mu.Unlock()
	cl.conn.Close()
	cl.cmd.Wait()
}

// request sends m with optional stdio and returns the channel its replies
// arrive on.
func (cl *execClient) request(m execMsg, stdio []*os.File) (uint64, chan execMsg, error) {
	cl.mu.Lock()
	if cl.dead {
		cl.mu.Unlock()
		return 0, nil, errServerGone
	}
	cl.nextID++
	m.ID = cl.nextID
	ch := make(chan execMsg, 2)
	cl.pending[m.ID] = ch
	cl.mu.Unlock()

	b, err := json.Marshal(m)
	if err == nil && len(b) > maxExecMsg {
		err = fmt.Errorf("%w: command and environment exceed %d bytes", ErrInvalidSpec, maxExecMsg)
	}
	if err == nil {
		var oob []byte
		if stdio != nil {
			oob = unix.UnixRights(int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd()))
		}
		_, _, err = cl.conn.WriteMsgUnix(b, oob, nil)
	}
	if err != nil {
		cl.mu.Lock()
		delete(cl.pending, m.ID)
		cl.mu.Unlock()
		return 0, nil, fmt.Errorf("exec request: %w", err)
	}
	return m.ID, ch, nil
}

func (cl *execClient) signal(id uint64, sig syscall.Signal) error {
	b, _ := json.Marshal(execMsg{ID: id, Signal: int(sig)})
	if _, err := cl.conn.Write(b); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	return nil
}
