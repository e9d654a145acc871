package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
)

// ExecArgs are the streams of a command run with ExecInstance.
type ExecArgs struct {
	// Stdin is sent to the command; nil means an empty stdin. It is read
	// in the background and may still be blocked in a Read when
	// ExecInstance returns.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output (nil discards it).
	// An interactive command's terminal output all goes to Stdout.
	Stdout, Stderr io.Writer
	// Control, when set, is called once the control channel is up; the
	// ExecControl stays usable until ExecInstance returns (window
	// resizes, signals).
	Control func(*ExecControl)
}

// ExecControl sends control messages to a running command.
type ExecControl struct {
	mu   sync.Mutex
	ctx  context.Context
	conn *websocket.Conn
}

func (e *ExecControl) send(msg api.ExecControl) error {
	buf, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conn.Write(e.ctx, websocket.MessageText, buf)
}

// Resize tells the command's terminal its new size (interactive only).
func (e *ExecControl) Resize(width, height int) error {
	return e.send(api.ExecControl{Command: "window-resize",
		Args: map[string]string{"width": strconv.Itoa(width), "height": strconv.Itoa(height)}})
}

// Signal sends a signal to the command.
func (e *ExecControl) Signal(sig int) error {
	return e.send(api.ExecControl{Command: "signal", Signal: sig})
}

// ExecInstance runs req.Command in the instance over websockets
// (req.WaitForWebsocket is forced on), mirrors its streams with args and
// returns its exit code once it has ended and its output is written.
func (c *Client) ExecInstance(ctx context.Context, name string, req api.InstanceExecPost, args ExecArgs) (int, error) {
	req.WaitForWebsocket = true
	req.RecordOutput = false
	env, _, err := c.do(ctx, request{method: http.MethodPost, path: instancePath(name) + "/exec", query: c.pq(), body: req})
	if err != nil {
		return -1, err
	}
	op, err := c.OperationFromResponse(env)
	if err != nil {
		return -1, fmt.Errorf("exec: %w", err)
	}
	fds := map[string]string{}
	if raw, ok := op.Metadata["fds"].(map[string]any); ok {
		for k, v := range raw {
			if s, ok := v.(string); ok {
				fds[k] = s
			}
		}
	}
	need := []string{"0", "1", "2"}
	if req.Interactive {
		need = []string{"0"}
	}
	for _, fd := range need {
		if fds[fd] == "" {
			return -1, fmt.Errorf("exec: the server sent no secret for fd %s", fd)
		}
	}
	// ioCtx ends the websockets once the command is over.
	ioCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := map[string]*websocket.Conn{}
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	// Control first, so a resize or signal can never miss the command.
	if fds["control"] != "" {
		ctl, err := c.dialOperation(ioCtx, op.ID, fds["control"])
		if err != nil {
			_ = op.Cancel(context.WithoutCancel(ctx))
			return -1, err
		}
		conns["control"] = ctl
		ctl.CloseRead(ioCtx)
		if args.Control != nil {
			args.Control(&ExecControl{ctx: ioCtx, conn: ctl})
		}
	}
	for _, fd := range need {
		conn, err := c.dialOperation(ioCtx, op.ID, fds[fd])
		if err != nil {
			return -1, err
		}
		conns[fd] = conn
	}

	var outputs sync.WaitGroup
	if req.Interactive {
		// One socket both ways: stdin in, the terminal out.
		go sendStream(ioCtx, conns["0"], args.Stdin)
		outputs.Add(1)
		go func() { defer outputs.Done(); recvStream(ioCtx, conns["0"], args.Stdout) }()
	} else {
		stdin := conns["0"]
		// Nothing comes back on stdin, but control frames (close) must
		// be read.
		stdin.CloseRead(ioCtx)
		go sendStream(ioCtx, stdin, args.Stdin)
		outputs.Add(2)
		go func() { defer outputs.Done(); recvStream(ioCtx, conns["1"], args.Stdout) }()
		go func() { defer outputs.Done(); recvStream(ioCtx, conns["2"], args.Stderr) }()
	}
	werr := op.Wait(ctx, -1)
	// The output streams end with the server's end-of-stream frame, sent
	// before the operation ends; waiting for them makes sure nothing is
	// lost, and cancelling ioCtx afterwards releases stdin.
	outputs.Wait()
	if werr != nil {
		return -1, werr
	}
	switch v := op.Metadata["return"].(type) {
	case float64:
		return int(v), nil
	case json.Number:
		n, err := v.Int64()
		return int(n), err
	}
	return -1, errors.New("exec: the operation has no exit code")
}

func (c *Client) dialOperation(ctx context.Context, id, secret string) (*websocket.Conn, error) {
	u, err := c.url(operationPath(id)+"/websocket", url.Values{"secret": {secret}})
	if err != nil {
		return nil, err
	}
	hdr := http.Header{"User-Agent": {c.userAgent}}
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: hdr})
	if err != nil {
		if resp != nil && resp.Body != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if _, envErr := decodeEnvelope(resp); envErr != nil {
				return nil, envErr
			}
		}
		return nil, c.transportError(err)
	}
	conn.SetReadLimit(-1)
	return conn, nil
}

// sendStream copies r to the websocket as binary frames, then sends the
// end-of-stream (empty text) frame.
func sendStream(ctx context.Context, conn *websocket.Conn, r io.Reader) {
	if r != nil {
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if werr := conn.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	_ = conn.Write(ctx, websocket.MessageText, []byte{})
}

// recvStream copies binary frames to w until the end-of-stream frame, a
// close or an error.
func recvStream(ctx context.Context, conn *websocket.Conn, w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		if typ == websocket.MessageText {
			// End of stream. Keep reading in the background so the
			// server's close handshake is answered at once.
			conn.CloseRead(ctx)
			return
		}
		if _, err := w.Write(data); err != nil {
			w = io.Discard // keep draining so the command is not blocked
		}
	}
}
