package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/idmap"
	lxcdriver "github.com/moat/moat/internal/instance/lxc"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func wsSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// uuidRE is the shape of volatile.uuid (see newUUID) and of operation
// ids, which name exec log files.
const uuidRE = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`

var uuidPattern = regexp.MustCompile(`^` + uuidRE + `$`)

// execLogDir holds the record-output files of an instance. It is keyed by
// the instance's volatile.uuid, not its name: a rename keeps the files, and
// an instance created later under a deleted one's name never serves that
// one's output. Users cannot set volatile keys, so no instance can point
// at another's directory.
func (d *Daemon) execLogDir(config map[string]string) (string, error) {
	id := config["volatile.uuid"]
	if !uuidPattern.MatchString(id) {
		return "", fmt.Errorf("instance has no valid volatile.uuid (%q)", id)
	}
	return filepath.Join(d.cfg.StateDir, "logs", id), nil
}

// removeExecLogs drops an instance's record-output files with it.
func (d *Daemon) removeExecLogs(in store.Instance) {
	if dir, err := d.execLogDir(in.Config); err == nil {
		_ = os.RemoveAll(dir)
	}
}

// execEnv builds the command's environment: LXD's defaults, then the
// instance's environment.* keys, then the request's.
func execEnv(ec map[string]string, req map[string]string, uid uint32) []string {
	env := map[string]string{"PATH": defaultPath, "LANG": "C.UTF-8"}
	if uid == 0 {
		env["HOME"], env["USER"] = "/root", "root"
	}
	for k, v := range ec {
		if n, ok := strings.CutPrefix(k, "environment."); ok {
			env[n] = v
		}
	}
	for k, v := range req {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func (d *Daemon) execInstance(r *route.Request) response.Response {
	var req api.InstanceExecPost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if len(req.Command) == 0 {
		return response.Error(errdefs.Invalidf("Field \"command\" must name a command"))
	}
	// Arguments, values and paths reach execve as C strings: a NUL would
	// silently cut them short.
	for _, arg := range req.Command {
		if strings.Contains(arg, "\x00") {
			return response.Error(errdefs.Invalidf("Field \"command\" must not contain NUL bytes"))
		}
	}
	for k, v := range req.Environment {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return response.Error(errdefs.Invalidf("Invalid environment variable name %q", k))
		}
		if strings.Contains(v, "\x00") {
			return response.Error(errdefs.Invalidf("Environment variable %q must not contain NUL bytes", k))
		}
	}
	if req.Cwd != "" && (!strings.HasPrefix(req.Cwd, "/") || strings.Contains(req.Cwd, "\x00")) {
		return response.Error(errdefs.Invalidf("Field \"cwd\" must be an absolute path"))
	}
	if req.User > idmap.MaxID || req.Group > idmap.MaxID {
		return response.Error(errdefs.Invalidf("Invalid user or group id"))
	}
	project, name := r.Project, r.Var("name")
	l, err := d.loadInstance(project, name)
	if err != nil {
		return response.Error(err)
	}
	h, err := d.handle(l)
	if err != nil {
		return response.Error(err)
	}
	if st, err := h.StateWithoutNetwork(); err != nil || st.Status != lxcdriver.StatusRunning {
		return response.Error(errdefs.Invalidf("Instance is not running"))
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
		if req.User == 0 {
			cwd = "/root"
		}
	}
	spec := lxcdriver.ExecSpec{Command: req.Command, Env: execEnv(l.EC, req.Environment, req.User),
		UID: int(req.User), GID: int(req.Group), Cwd: cwd}
	requestor := r.Identity.Requestor()
	resources := map[string][]string{"instances": {instanceURL(project, name)}}
	event := func() {
		d.bus.Lifecycle("instance-exec", instanceURL(project, name), project, requestor, map[string]any{"command": req.Command})
	}
	if !req.WaitForWebsocket {
		// No websockets: stdio is /dev/null, or files with record-output.
		op, err := d.ops.Create(operation.Args{
			Class: api.OperationClassTask, Description: "Executing command", Project: project,
			Resources: resources, Creator: r.Identity,
			Run: func(ctx context.Context, op *operation.Operation) error {
				md := map[string]any{}
				var files []*os.File
				if req.RecordOutput {
					dir, err := d.execLogDir(l.Config)
					if err != nil {
						return err
					}
					if err := os.MkdirAll(dir, 0o700); err != nil {
						return err
					}
					out := map[string]string{}
					for _, fd := range []string{"1", "2"} {
						base := fmt.Sprintf("exec_%s.%s", op.ID(), map[string]string{"1": "stdout", "2": "stderr"}[fd])
						f, err := os.OpenFile(filepath.Join(dir, base), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
						if err != nil {
							return err
						}
						files = append(files, f)
						out[fd] = "/1.0/instances/" + name + "/logs/" + base
					}
					spec.Stdout, spec.Stderr = files[0], files[1]
					md["output"] = out
				}
				p, err := h.Exec(spec)
				for _, f := range files {
					f.Close()
				}
				if err != nil {
					return err
				}
				event()
				code, err := p.Wait()
				if err != nil {
					return err
				}
				md["return"] = code
				op.UpdateMetadata(md)
				return nil
			},
		})
		if err != nil {
			return response.Error(err)
		}
		op.Start()
		return response.Async(op.Render(r.Identity))
	}

	s := &execSession{d: d, h: h, spec: spec, interactive: req.Interactive, ready: make(chan struct{}), gone: make(chan struct{}),
		claimed: map[string]bool{}, conns: map[string]*websocket.Conn{}, secrets: map[string]string{},
		width: req.Width, height: req.Height}
	fds := []string{"0", "1", "2", "control"}
	if req.Interactive {
		fds = []string{"0", "control"}
	}
	fdMap := map[string]string{}
	var secrets []string
	for _, fd := range fds {
		sec := wsSecret()
		fdMap[fd] = sec
		s.secrets[sec] = fd
		secrets = append(secrets, sec)
	}
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassWebsocket, Description: "Executing command", Project: project,
		Resources: resources, Creator: r.Identity,
		Metadata:   map[string]any{"fds": fdMap, "command": req.Command, "environment": req.Environment, "interactive": req.Interactive},
		SecretKeys: []string{"fds"}, WebsocketSecrets: secrets,
		Connect: s.connect,
		Run: func(ctx context.Context, op *operation.Operation) error {
			code, err := s.run(ctx, event)
			if err != nil {
				return err
			}
			op.UpdateMetadata(map[string]any{"return": code})
			return nil
		},
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

// execSession is one websocket exec: it starts the command once the
// required fds are connected and mirrors stdio over them.
type execSession struct {
	d           *Daemon
	h           *lxcdriver.Container
	spec        lxcdriver.ExecSpec
	interactive bool

	mu sync.Mutex
	// width and height are the terminal size the command starts with;
	// a resize that arrives before the start changes them.
	width, height int
	// claimed holds the fds a connection was accepted (or is being
	// accepted) for; conns those whose websocket is up.
	claimed map[string]bool
	conns   map[string]*websocket.Conn
	secrets map[string]string
	ready   chan struct{}
	once    sync.Once
	// started is set when the command is about to be started: from then
	// on control messages wait in pending until proc is set.
	started bool
	pending []api.ExecControl
	// ended is set when the session is over: later connections are
	// refused instead of being accepted and never closed.
	ended bool
	// gone is closed when the client vanished while the session was on
	// (see clientGone): the session stops waiting for its websockets, a
	// command being started is killed as soon as it runs.
	gone chan struct{}
	proc *lxcdriver.Process
	ptmx *os.File
}

// maxPendingControl bounds the control messages kept for a command that
// is being started. The window is the start itself (milliseconds); a
// client that sends more meanwhile is repeating itself, and standard
// signals do not queue in the kernel either.
const maxPendingControl = 16

func (s *execSession) required() []string {
	if s.interactive {
		return []string{"0"}
	}
	return []string{"0", "1", "2"}
}

func (s *execSession) connect(op *operation.Operation, secret string, w http.ResponseWriter, r *http.Request) error {
	fd := s.secrets[secret]
	// Checking and claiming the fd is one critical section: of two
	// connections racing with the same secret exactly one is accepted.
	s.mu.Lock()
	var refused error
	switch {
	case s.ended:
		refused = errdefs.Invalidf("The command of this operation has ended")
	case s.claimed[fd]:
		refused = errdefs.Conflictf("Websocket for fd %q is already connected", fd)
	default:
		s.claimed[fd] = true
	}
	s.mu.Unlock()
	if refused != nil {
		return response.Error(refused).Render(w)
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.mu.Lock()
		delete(s.claimed, fd)
		s.mu.Unlock()
		return err
	}
	c.SetReadLimit(-1)
	s.mu.Lock()
	if s.ended {
		// run() closed the others while this one was being accepted.
		s.mu.Unlock()
		return c.Close(websocket.StatusGoingAway, "the command has ended")
	}
	s.conns[fd] = c
	all := true
	for _, need := range s.required() {
		if s.conns[need] == nil {
			all = false
		}
	}
	s.mu.Unlock()
	if all {
		s.once.Do(func() { close(s.ready) })
	}
	if fd == "control" {
		go s.serveControl(c)
	}
	// The connection is hijacked: it outlives this handler, and run()
	// closes it when the session is over.
	return nil
}

func (s *execSession) serveControl(c *websocket.Conn) {
	ctx := context.Background()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			s.lost(err)
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		var msg api.ExecControl
		if json.Unmarshal(data, &msg) != nil {
			continue
		}
		s.control(msg)
	}
}

// control applies a control message, or keeps it for the command if it
// has not started yet: a signal sent right after connecting must not be
// lost. Delivery happens under the lock so that kept messages and new
// ones reach the command in the order they were sent.
func (s *execSession) control(msg api.ExecControl) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.proc != nil:
		s.deliver(msg)
	case !s.started && msg.Command == "window-resize":
		// Not started yet: the command starts with this size.
		if w, h, ok := winSize(msg); ok {
			s.width, s.height = w, h
		}
	case len(s.pending) < maxPendingControl:
		s.pending = append(s.pending, msg)
	}
}

// setProcess records the started command and hands it the control
// messages that arrived while it was being started.
func (s *execSession) setProcess(p *lxcdriver.Process, ptmx *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc, s.ptmx = p, ptmx
	select {
	case <-s.gone:
		_ = p.Signal(syscall.SIGKILL)
	default:
	}
	for _, msg := range s.pending {
		s.deliver(msg)
	}
	s.pending = nil
}

// deliver sends msg to the running command; s.mu is held.
func (s *execSession) deliver(msg api.ExecControl) {
	switch msg.Command {
	case "signal":
		if msg.Signal > 0 && msg.Signal < 65 {
			_ = s.proc.Signal(syscall.Signal(msg.Signal))
		}
	case "window-resize":
		if w, h, ok := winSize(msg); ok && s.ptmx != nil {
			_ = unix.IoctlSetWinsize(int(s.ptmx.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(w), Row: uint16(h)})
		}
	}
}

func winSize(msg api.ExecControl) (int, int, bool) {
	w, _ := strconv.Atoi(msg.Args["width"])
	h, _ := strconv.Atoi(msg.Args["height"])
	return w, h, w > 0 && h > 0 && w < 1<<16 && h < 1<<16
}

// lost is called with the error that ended a read of one of the
// session's websockets. A connection that dropped without a close
// handshake (a killed client, a lost link) means nobody is left to give
// the command input, read its output or signal it: as LXD does, the
// command is killed. Left running, a shell or a sleep would hold its
// websockets, pipes and a process in the container for ever. A clean
// close is the client's choice (on stdin it means end of input) and
// changes nothing.
func (s *execSession) lost(err error) {
	if err != nil && websocket.CloseStatus(err) == -1 {
		s.clientGone()
	}
}

// clientGone ends the session of a client that went away: the command is
// killed (once started, if it is being started), or never started if the
// client left before connecting every fd. After the end it does nothing.
func (s *execSession) clientGone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gone:
		return
	default:
	}
	if s.ended {
		return
	}
	close(s.gone)
	if s.proc != nil {
		_ = s.proc.Signal(syscall.SIGKILL)
	}
}

func (s *execSession) conn(fd string) *websocket.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[fd]
}

func (s *execSession) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	// Once ended, s.conns no longer changes. Each close waits for the
	// client's answer to the handshake, up to 5 s, and the lxc client
	// never answers on control (it does not read it): the closes run in
	// the background so the operation, and lxc exec, end at once.
	for _, c := range s.conns {
		go c.Close(websocket.StatusNormalClosure, "")
	}
}

// run waits for the websockets, runs the command, mirrors its stdio and
// returns its exit code.
func (s *execSession) run(ctx context.Context, event func()) (int, error) {
	select {
	case <-s.ready:
	case <-s.gone:
		s.closeAll()
		return 0, errors.New("the client went away before connecting every websocket")
	case <-ctx.Done():
		s.closeAll()
		return 0, ctx.Err()
	case <-time.After(30 * time.Second):
		s.closeAll()
		return 0, errors.New("timed out waiting for the websockets to connect")
	}
	defer s.closeAll()
	if s.interactive {
		return s.runPTY(ctx, event)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	spec := s.spec
	spec.Stdin, spec.Stdout, spec.Stderr = inR, outW, errW
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	p, err := s.h.Exec(spec)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return 0, err
	}
	s.setProcess(p, nil)
	event()
	go func() { s.lost(wsToWriter(s.conn("0"), inW)) }()
	var wg sync.WaitGroup
	for fd, rd := range map[string]*os.File{"1": outR, "2": errR} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readerToWS(rd, s.conn(fd), s.lost)
		}()
	}
	code, err := p.Wait()
	waitOrTimeout(&wg, 2*time.Second)
	outR.Close()
	errR.Close()
	return code, err
}

func waitOrTimeout(wg *sync.WaitGroup, t time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(t):
	}
}

// wsToWriter copies binary frames to w until a text frame (LXD's end of
// stream), a close or an error, then closes w. It returns the websocket's
// read error, nil otherwise.
func wsToWriter(c *websocket.Conn, w io.WriteCloser) error {
	defer w.Close()
	if c == nil {
		return nil
	}
	for {
		typ, data, err := c.Read(context.Background())
		if err != nil {
			return err
		}
		if typ == websocket.MessageText {
			return nil
		}
		if _, err := w.Write(data); err != nil {
			return nil
		}
	}
}

// readerToWS sends what r yields as binary frames, then an empty text
// frame (end of stream).
func readerToWS(r io.Reader, c *websocket.Conn, lost func(error)) {
	if c == nil {
		_, _ = io.Copy(io.Discard, r)
		return
	}
	buf := make([]byte, 32*1024)
	ctx := context.Background()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := c.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
				// Nobody reads this output any more. A dropped client is
				// reported (the command is killed, as for a failed read),
				// and the rest is drained, so a command whose output
				// goes nowhere never blocks on a full pipe.
				lost(werr)
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
		if err != nil {
			break
		}
	}
	_ = c.Write(ctx, websocket.MessageText, []byte{})
}

// runPTY runs the command on a new pty of the container's own devpts
// instance, so that it is the command's controlling terminal there, and
// mirrors the master over the "0" websocket.
func (s *execSession) runPTY(ctx context.Context, event func()) (int, error) {
	spec := s.spec
	spec.Terminal = true
	s.mu.Lock()
	s.started = true
	if s.width > 0 && s.height > 0 && s.width < 1<<16 && s.height < 1<<16 {
		spec.Cols, spec.Rows = uint16(s.width), uint16(s.height)
	}
	s.mu.Unlock()
	hasTerm := false
	for _, e := range spec.Env {
		hasTerm = hasTerm || strings.HasPrefix(e, "TERM=")
	}
	if !hasTerm {
		spec.Env = append(spec.Env, "TERM=xterm")
	}
	p, err := s.h.Exec(spec)
	if err != nil {
		return 0, err
	}
	ptmx := p.Terminal()
	s.setProcess(p, ptmx)
	event()
	c := s.conn("0")
	go func() {
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				s.lost(err)
				return
			}
			if typ == websocket.MessageText {
				return
			}
			if _, err := ptmx.Write(data); err != nil {
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() { readerToWS(ptmx, c, s.lost); close(done) }()
	code, err := p.Wait()
	// Output still buffered in the pty reaches the client; EIO ends it.
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	ptmx.Close()
	return code, err
}

// execEndpoints are the routes of an instance's log files: its
// record-output files and liblxc's log of its last start.
func (d *Daemon) execEndpoints() []*route.Endpoint {
	inst := instanceEntity
	return []*route.Endpoint{
		{Path: "/1.0/instances/{name}/logs",
			Get: &route.Action{Handler: d.getInstanceLogs, Entitlement: authz.CanView, Entity: inst},
		},
		{Path: "/1.0/instances/{name}/logs/{file}",
			Get: &route.Action{Handler: d.getInstanceLog, Entitlement: authz.CanView, Entity: inst},
			// Deleting a log changes the instance's state: the same
			// entitlement as running the command that wrote it.
			Delete: &route.Action{Handler: d.deleteInstanceLog, Entitlement: authz.CanExec, Entity: inst},
		},
	}
}

// lxcLog is liblxc's log of the container's last start (warnings and
// errors), which lxc info --show-log reads. It is the daemon's own file,
// so it can be served but not deleted.
const lxcLog = "lxc.log"

var execLogPattern = regexp.MustCompile(`^exec_` + uuidRE + `\.std(out|err)$`)

// logPath is where an instance's log file is, after checking its name:
// only lxc.log and record-output files are ever opened.
func (d *Daemon) logPath(l loaded, file string) (string, error) {
	if file == lxcLog {
		return filepath.Join(d.ct.lxcPath, d.ct.lxcName(l.Project, l.Name), lxcLog), nil
	}
	if !execLogPattern.MatchString(file) {
		return "", errdefs.Invalidf("Invalid log file name %q: Moat has %s and exec_<operation>.stdout/.stderr", file, lxcLog)
	}
	dir, err := d.execLogDir(l.Config)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, file), nil
}

// openLog opens a log file, refusing anything but a regular file.
func openLog(path, file string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, errdefs.NotFoundf("Log file %q not found", file)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, errdefs.NotFoundf("Log file %q not found", file)
	}
	return f, fi, nil
}

// getInstanceLogs lists the URLs of an instance's log files.
func (d *Daemon) getInstanceLogs(r *route.Request) response.Response {
	l, err := d.loadInstance(r.Project, r.Var("name"))
	if err != nil {
		return response.Error(err)
	}
	var files []string
	if p, err := d.logPath(l, lxcLog); err == nil {
		if f, _, err := openLog(p, lxcLog); err == nil {
			f.Close()
			files = append(files, lxcLog)
		}
	}
	dir, err := d.execLogDir(l.Config)
	if err != nil {
		return response.Error(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return response.Error(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() && execLogPattern.MatchString(e.Name()) {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	urls := make([]string, 0, len(files))
	for _, f := range files {
		urls = append(urls, "/1.0/instances/"+url.PathEscape(l.Name)+"/logs/"+f)
	}
	return response.Sync(urls, nil)
}

// getInstanceLog serves a log file with the headers LXD sends (length,
// modification time, file name), ranges and conditional requests included.
func (d *Daemon) getInstanceLog(r *route.Request) response.Response {
	l, err := d.loadInstance(r.Project, r.Var("name"))
	if err != nil {
		return response.Error(err)
	}
	file := r.Var("file")
	path, err := d.logPath(l, file)
	if err != nil {
		return response.Error(err)
	}
	f, fi, err := openLog(path, file)
	if err != nil {
		return response.Error(err)
	}
	d.logEvent("instance-log-retrieved", r, file)
	return response.Manual(func(w http.ResponseWriter) error {
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", "inline;filename="+file)
		http.ServeContent(w, r.HTTP, file, fi.ModTime(), f)
		return nil
	})
}

// logEvent is the lifecycle event of a log file read or deleted, with the
// file's URL as its source, as LXD sends it.
func (d *Daemon) logEvent(action string, r *route.Request, file string) {
	u, query, _ := strings.Cut(instanceURL(r.Project, r.Var("name")), "?")
	u += "/logs/" + url.PathEscape(file)
	if query != "" {
		u += "?" + query
	}
	d.bus.Lifecycle(action, u, r.Project, r.Identity.Requestor(), nil)
}

// deleteInstanceLog removes a record-output file.
func (d *Daemon) deleteInstanceLog(r *route.Request) response.Response {
	l, err := d.loadInstance(r.Project, r.Var("name"))
	if err != nil {
		return response.Error(err)
	}
	file := r.Var("file")
	if file == lxcLog {
		return response.Error(errdefs.Invalidf("Log file %q may not be deleted", file))
	}
	path, err := d.logPath(l, file)
	if err != nil {
		return response.Error(err)
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return response.Error(errdefs.NotFoundf("Log file %q not found", file))
		}
		return response.Error(err)
	}
	d.logEvent("instance-log-deleted", r, file)
	return response.EmptySync()
}
