package daemon

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/moat/moat/api"
)

// FuzzExecControl feeds control-channel messages to what serveControl
// does with them before the command runs: decode, then control(). A
// window size is taken only when both sides are whole numbers that fit a
// terminal's 16 bits, and only then is the starting size changed; other
// messages wait for the command, at most maxPendingControl of them.
//
// The signal number is checked inside deliver, which needs a running
// command; the integration exec tests cover it.
func FuzzExecControl(f *testing.F) {
	for _, s := range []string{
		`{"command":"window-resize","args":{"width":"80","height":"24"}}`,
		`{"command":"window-resize","args":{"width":"65535","height":"1"}}`,
		`{"command":"window-resize","args":{"width":"65536","height":"24"}}`,
		`{"command":"window-resize","args":{"width":"0","height":"24"}}`,
		`{"command":"window-resize","args":{"width":"-80","height":"24"}}`,
		`{"command":"window-resize","args":{"width":"+80","height":"024"}}`,
		`{"command":"window-resize","args":{"width":"80"}}`,
		`{"command":"window-resize","args":{"width":"9223372036854775808","height":"24"}}`,
		`{"command":"window-resize","args":{"width":"4294967376","height":"24"}}`,
		`{"command":"window-resize","args":null}`,
		`{"command":"window-resize","args":{"width":80,"height":24}}`,
		`{"command":"signal","signal":2}`,
		`{"command":"signal","signal":0}`,
		`{"command":"signal","signal":65}`,
		`{"command":"signal","signal":-9}`,
		`{"command":"signal","signal":1e30}`,
		`{"command":"unknown"}`,
		`{}`,
		`{"args":{"":"","height":"4"}}`,
		`null`,
		`[]`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg api.ExecControl
		if json.Unmarshal(data, &msg) != nil {
			return // serveControl drops what does not decode
		}
		w, h, ok := winSize(msg)
		wantW, errW := strconv.Atoi(msg.Args["width"])
		wantH, errH := strconv.Atoi(msg.Args["height"])
		in16 := func(n int) bool { return n > 0 && n < 1<<16 }
		if want := errW == nil && errH == nil && in16(wantW) && in16(wantH); ok != want {
			t.Fatalf("winSize(%v) ok = %v, want %v", msg.Args, ok, want)
		}
		if ok && (w != wantW || h != wantH || int(uint16(w)) != w || int(uint16(h)) != h) {
			t.Fatalf("winSize(%v) = %d x %d", msg.Args, w, h)
		}
		// The size the command starts with: changed only by a resize
		// that winSize accepts.
		startW, startH := 0, 0
		if msg.Command == "window-resize" && ok {
			startW, startH = w, h
		}
		s := &execSession{gone: make(chan struct{})}
		for range maxPendingControl + 4 {
			s.control(msg)
		}
		switch {
		case msg.Command == "window-resize":
			if len(s.pending) != 0 {
				t.Fatalf("a resize before the start was kept for later: %v", s.pending)
			}
			if s.width != startW || s.height != startH {
				t.Fatalf("%s: starting size %d x %d", data, s.width, s.height)
			}
		case len(s.pending) != maxPendingControl || s.width != 0 || s.height != 0:
			t.Fatalf("%s: %d kept, size %d x %d", data, len(s.pending), s.width, s.height)
		}
		// Once the start is under way a resize waits with the rest.
		s.started = true
		before := len(s.pending)
		s.pending = s.pending[:0]
		s.control(api.ExecControl{Command: "window-resize", Args: msg.Args})
		if len(s.pending) != 1 || s.width != startW || s.height != startH {
			t.Fatalf("resize during the start (%d kept before): %d kept, size %d x %d", before, len(s.pending), s.width, s.height)
		}
	})
}
