package lxcdriver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The exec server ("forkexecd") is a long-lived helper serving every Exec
// of the daemon over one SOCK_SEQPACKET socket. Starting a helper per exec
// would cost more than the attach itself (a process start is ~2-4 ms on
// this kind of machine). The server forks attaching children from its main
// loop only (attach.h); waiting for each command to exec, and then to
// exit, happens in a goroutine per command, so a container that stalls
// its exec holds up no other. It makes no liblxc calls: each request
// brings what the attach needs.
//
// Requests and replies are one JSON execMsg per packet. An exec request
// carries a pidfd of the container's init and the command's stdin, stdout
// and stderr as SCM_RIGHTS; the server never copies their data. The
// command's details travel in the packet rather than argv, which is world
// readable in /proc. For a terminal the reply to an exec carries the pty's
// master, opened inside the container.

// execMsg is both request (daemon to server) and reply (server to daemon).
type execMsg struct {
	ID uint64

	// exec request
	Name       string   `json:",omitempty"` // for errors only
	Privileged bool     `json:",omitempty"` // init shares the host's user namespace
	Cgroups    []string `json:",omitempty"` // cgroup.procs files of init's cgroups
	CapDrop    []int    `json:",omitempty"` // capabilities out of the bounding set
	Command    []string `json:",omitempty"`
	Env        []string `json:",omitempty"`
	UID        int      `json:",omitempty"`
	GID        int      `json:",omitempty"`
	Cwd        string   `json:",omitempty"`
	PTY        bool     `json:",omitempty"` // a terminal instead of the stdio files
	Rows       uint16   `json:",omitempty"`
	Cols       uint16   `json:",omitempty"`

	// signal request
	Signal int `json:",omitempty"`

	// replies: PID once started, then Exit; or Error instead of either
	PID   int    `json:",omitempty"`
	Exit  *int   `json:",omitempty"`
	Error string `json:",omitempty"`
	Errno int    `json:",omitempty"` // the errno behind Error, if any

	// master is the pty master that came with a PID reply.
	master *os.File
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
		var oob []byte
		if m.master != nil {
			oob = unix.UnixRights(int(m.master.Fd()))
		}
		conn.WriteMsgUnix(b, oob, nil) // the daemon may be gone; commands are still reaped
	}

	var (
		mu    sync.Mutex
		procs = map[uint64]*os.Process{}
		wg    sync.WaitGroup
	)
	buf := make([]byte, maxExecMsg)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			break
		}
		var files []*os.File
		for _, fd := range receivedFds(oob[:oobn]) {
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
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
		case len(m.Command) > 0 && (len(files) == 4 || m.PTY && len(files) == 1):
			fail := func(id uint64, err error) {
				var errno syscall.Errno
				errors.As(err, &errno)
				send(execMsg{ID: id, Error: err.Error(), Errno: int(errno)})
			}
			st, err := startAttach(attachRequestOf(m, files))
			if err != nil {
				fail(m.ID, fmt.Errorf("attach to %s: %w", m.Name, err))
				break
			}
			wg.Add(1)
			go func(id uint64, name string) {
				defer wg.Done()
				pid, master, err := st.finish()
				if err != nil {
					fail(id, fmt.Errorf("attach to %s: %w", name, err))
					return
				}
				p, _ := os.FindProcess(pid) // never fails on Linux
				mu.Lock()
				procs[id] = p
				mu.Unlock()
				send(execMsg{ID: id, PID: pid, master: master})
				if master != nil {
					master.Close()
				}
				code, err := waitCode(p)
				mu.Lock()
				delete(procs, id)
				mu.Unlock()
				if err != nil {
					send(execMsg{ID: id, Error: err.Error()})
					return
				}
				send(execMsg{ID: id, Exit: &code})
			}(m.ID, m.Name)
		default:
			send(execMsg{ID: m.ID, Error: "bad request"})
		}
		closeFiles(files)
	}
	wg.Wait()
	return 0
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func receivedFds(oob []byte) []int {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var all []int
	for _, cm := range cmsgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		all = append(all, fds...)
	}
	return all
}

// defaultPath is searched for the command when the request sets no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// attachRequestOf translates an exec request; files are init's pidfd,
// then stdin, stdout and stderr unless the command gets a terminal.
func attachRequestOf(m execMsg, files []*os.File) *attachRequest {
	path := defaultPath
	for _, e := range m.Env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			path = p
		}
	}
	r := &attachRequest{
		pidfd: int(files[0].Fd()), privileged: m.Privileged, procs: m.Cgroups, capDrop: m.CapDrop,
		argv: m.Command, env: m.Env, path: path, cwd: m.Cwd, uid: m.UID, gid: m.GID,
		pty: m.PTY, rows: m.Rows, cols: m.Cols,
	}
	if !m.PTY {
		for i, f := range files[1:] {
			r.stdio[i] = int(f.Fd())
		}
	}
	return r
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

// replyError is the error of a reply, which wraps the errno that caused
// it (ENOENT for a missing cwd, say) for errors.Is.
type replyError struct {
	msg   string
	errno syscall.Errno
}

func (e *replyError) Error() string { return "exec: " + e.msg }

func (e *replyError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

func (m execMsg) err() error {
	if m.Error == "" {
		return nil
	}
	return &replyError{m.Error, syscall.Errno(m.Errno)}
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
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := cl.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			break
		}
		fds := receivedFds(oob[:oobn])
		var m execMsg
		if json.Unmarshal(buf[:n], &m) != nil || len(fds) > 1 || len(fds) == 1 && m.PID == 0 {
			for _, fd := range fds {
				unix.Close(fd)
			}
			continue
		}
		if len(fds) == 1 {
			// Non-blocking, so that the runtime poller serves it and
			// Close interrupts a pending Read.
			unix.SetNonblock(fds[0], true)
			m.master = os.NewFile(uintptr(fds[0]), "ptmx")
		}
		cl.mu.Lock()
		ch := cl.pending[m.ID]
		if m.final() {
			delete(cl.pending, m.ID)
		}
		cl.mu.Unlock()
		if ch != nil {
			ch <- m // buffered for the at most two replies per ID
		} else if m.master != nil {
			m.master.Close()
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

// request sends m with the files the server expects for it and returns
// the channel its replies arrive on.
func (cl *execClient) request(m execMsg, files []*os.File) (uint64, chan execMsg, error) {
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
		if len(files) > 0 {
			fds := make([]int, len(files))
			for i, f := range files {
				fds[i] = int(f.Fd())
			}
			oob = unix.UnixRights(fds...)
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
