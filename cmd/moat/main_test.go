package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat/moat/internal/testdaemon"
)

// cli runs the moat command in-process against a real moatd.
type cli struct {
	t   *testing.T
	d   *testdaemon.Daemon
	env map[string]string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	d := testdaemon.Start(t)
	return &cli{t: t, d: d, env: map[string]string{
		"MOAT_DIR":  d.Dir,
		"MOAT_CONF": t.TempDir(),
	}}
}

func (c *cli) app(stdin string, stdout, stderr *syncBuffer) *app {
	return &app{
		stdin: strings.NewReader(stdin), stdout: stdout, stderr: stderr,
		getenv: func(k string) string { return c.env[k] },
	}
}

// runIn runs args with stdin and returns stdout, stderr and the exit code.
func (c *cli) runIn(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := c.app(stdin, &out, &errb).run(ctx, args)
	return out.String(), errb.String(), code
}

func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	return c.runIn("", args...)
}

// ok runs args, fails the test unless they succeed silently on stderr,
// and returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 || errOut != "" {
		c.t.Fatalf("moat %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs args and checks they exit 1 printing exactly wantErr.
func (c *cli) fails(wantErr string, args ...string) {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 1 || errOut != "Error: "+wantErr+"\n" {
		c.t.Fatalf("moat %s: exit %d, stderr %q, want exit 1 and %q", strings.Join(args, " "), code, errOut, "Error: "+wantErr)
	}
	if out != "" {
		c.t.Fatalf("moat %s: failed but printed %q", strings.Join(args, " "), out)
	}
}

// syncBuffer is a writer a test can read while a command writes to it;
// changed is signalled after every write.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.changed != nil {
		select {
		case b.changed <- struct{}{}:
		default:
		}
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits (bounded) until the buffer contains s.
func (b *syncBuffer) waitFor(t *testing.T, s string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		if out := b.String(); strings.Contains(out, s) {
			return out
		}
		select {
		case <-b.changed:
		case <-timeout:
			t.Fatalf("no %q within 10s; got:\n%s", s, b.String())
		}
	}
}
