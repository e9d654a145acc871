package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
)

// gatedWriter holds a connection's hijack (the websocket accept) until
// both racing connections have reached it, or a second has passed: it
// widens the window between checking an fd and storing its connection to
// what a loaded machine may give it.
type gatedWriter struct {
	http.ResponseWriter
	gate func()
}

func (g gatedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	g.gate()
	return g.ResponseWriter.(http.Hijacker).Hijack()
}

// TestExecConnectOnePerFd: two connections with the same secret for the
// same fd, both past the request handling at once: exactly one is
// accepted, the other gets a 409 naming the fd. Once the session is over
// a connection for a not yet connected fd is refused too.
func TestExecConnectOnePerFd(t *testing.T) {
	s := &execSession{secrets: map[string]string{"s0": "0", "s1": "1"}, claimed: map[string]bool{},
		conns: map[string]*websocket.Conn{}, ready: make(chan struct{})}
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	gate := func() {
		mu.Lock()
		arrived++
		if arrived == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(time.Second):
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.connect(nil, r.URL.Query().Get("secret"), gatedWriter{w, gate}, r); err != nil {
			t.Errorf("connect: %v", err)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(secret string) (*websocket.Conn, int, string) {
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/?secret="+secret, nil)
		if err == nil {
			c.CloseRead(ctx)
			return c, 101, ""
		}
		var env api.ResponseRaw
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&env)
		return nil, resp.StatusCode, env.Error
	}

	type result struct {
		c      *websocket.Conn
		status int
		msg    string
	}
	results := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() {
			c, status, msg := dial("s0")
			results <- result{c, status, msg}
		}()
	}
	var accepted int
	var refusal result
	for i := 0; i < 2; i++ {
		r := <-results
		if r.c != nil {
			accepted++
			defer r.c.CloseNow()
		} else {
			refusal = r
		}
	}
	if accepted != 1 || refusal.status != http.StatusConflict || refusal.msg != `Websocket for fd "0" is already connected` {
		t.Fatalf("%d accepted, refusal %d %q", accepted, refusal.status, refusal.msg)
	}
	// The client has its 101 before the daemon stores the connection.
	for deadline := time.Now().Add(5 * time.Second); s.conn("0") == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the accepted connection is not the session's fd 0")
		}
	}

	s.closeAll()
	if c, status, msg := dial("s1"); c != nil || status != http.StatusBadRequest || !strings.Contains(msg, "ended") {
		t.Fatalf("connection after the end: %v %d %q", c != nil, status, msg)
	}
}
