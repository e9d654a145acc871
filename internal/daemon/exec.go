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
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/moat/moat/api"
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

// execLogDir holds record-output files of an instance.
func (d *Daemon) execLogDir(project, name string) string {
	return filepath.Join(d.cfg.StateDir, "logs", d.ct.lxcName(project, name))
}

// removeExecLogs drops an instance's record-output files with it.
func (d *Daemon) removeExecLogs(in store.Instance) {
	_ = os.RemoveAll(d.execLogDir(in.Project, in.Name))
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
	if st, err := h.State(); err != nil || st.Status != lxcdriver.StatusRunning {
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
					dir := d.execLogDir(project, name)
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

	s := &execSession{d: d, h: h, spec: spec, interactive: req.Interactive, ready: make(chan struct{}),
		conns: map[string]*websocket.Conn{}, secrets: map[string]string{}, width: req.Width, height: req.Height}
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
	width       int
	height      int

	mu      sync.Mutex
	conns   map[string]*websocket.Conn
	secrets map[string]string
	ready   chan struct{}
	control chan struct{}
	done    chan struct{}
	once    sync.Once
	proc    *lxcdriver.Process
	ptmx    *os.File
}

func (s *execSession) required() []string {
	if s.interactive {
		return []string{"0"}
	}
	return []string{"0", "1", "2"}
}

func (s *execSession) connect(op *operation.Operation, secret string, w http.ResponseWriter, r *http.Request) error {
	fd := s.secrets[secret]
	s.mu.Lock()
	if _, dup := s.conns[fd]; dup {
		s.mu.Unlock()
		http.Error(w, "already connected", http.StatusConflict)
		return nil
	}
	s.mu.Unlock()
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	c.SetReadLimit(-1)
	s.mu.Lock()
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
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		var msg api.ExecControl
		if json.Unmarshal(data, &msg) != nil {
			continue
		}
		s.mu.Lock()
		proc, ptmx := s.proc, s.ptmx
		s.mu.Unlock()
		switch msg.Command {
		case "signal":
			if proc != nil && msg.Signal > 0 && msg.Signal < 65 {
				_ = proc.Signal(syscall.Signal(msg.Signal))
			}
		case "window-resize":
			w, _ := strconv.Atoi(msg.Args["width"])
			h, _ := strconv.Atoi(msg.Args["height"])
			if ptmx != nil && w > 0 && h > 0 && w < 1<<16 && h < 1<<16 {
				_ = unix.IoctlSetWinsize(int(ptmx.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(w), Row: uint16(h)})
			}
		}
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
	for _, c := range s.conns {
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
}

// run waits for the websockets, runs the command, mirrors its stdio and
// returns its exit code.
func (s *execSession) run(ctx context.Context, event func()) (int, error) {
	select {
	case <-s.ready:
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
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	event()
	go wsToWriter(s.conn("0"), inW)
	var wg sync.WaitGroup
	for fd, rd := range map[string]*os.File{"1": outR, "2": errR} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readerToWS(rd, s.conn(fd))
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
// stream), a close or an error, then closes w.
func wsToWriter(c *websocket.Conn, w io.WriteCloser) {
	defer w.Close()
	if c == nil {
		return
	}
	for {
		typ, data, err := c.Read(context.Background())
		if err != nil || typ == websocket.MessageText {
			return
		}
		if _, err := w.Write(data); err != nil {
			return
		}
	}
}

// readerToWS sends what r yields as binary frames, then an empty text
// frame (end of stream).
func readerToWS(r io.Reader, c *websocket.Conn) {
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
	if s.width > 0 && s.height > 0 && s.width < 1<<16 && s.height < 1<<16 {
		spec.Cols, spec.Rows = uint16(s.width), uint16(s.height)
	}
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
	s.mu.Lock()
	s.proc, s.ptmx = p, ptmx
	s.mu.Unlock()
	event()
	c := s.conn("0")
	go func() {
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil || typ == websocket.MessageText {
				return
			}
			if _, err := ptmx.Write(data); err != nil {
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() { readerToWS(ptmx, c); close(done) }()
	code, err := p.Wait()
	// Output still buffered in the pty reaches the client; EIO ends it.
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	ptmx.Close()
	return code, err
}

// getInstanceLog serves record-output files.
func (d *Daemon) getInstanceLog(r *route.Request) response.Response {
	file := r.Var("file")
	if !strings.HasPrefix(file, "exec_") || strings.ContainsAny(file, "/\x00") || strings.HasPrefix(file, ".") {
		return response.Error(errdefs.NotFoundf("Log file not found"))
	}
	if _, err := d.loadInstance(r.Project, r.Var("name")); err != nil {
		return response.Error(err)
	}
	path := filepath.Join(d.execLogDir(r.Project, r.Var("name")), file)
	f, err := os.Open(path)
	if err != nil {
		return response.Error(errdefs.NotFoundf("Log file not found"))
	}
	return response.Manual(func(w http.ResponseWriter) error {
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, err := io.Copy(w, f)
		return err
	})
}
