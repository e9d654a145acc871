package client_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
	"github.com/moat/moat/internal/testimage"
)

// withContainer imports the busybox image with a progress callback and
// launches a running container "c1", deleted at the end of the test.
func withContainer(t *testing.T) (*client.Client, context.Context) {
	t.Helper()
	if _, err := os.Stat(testimage.Busybox); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("busybox-static is required (CI=true forbids skipping)")
		}
		t.Skip("busybox-static is not installed")
	}
	c, ctx := connect(t)
	path := filepath.Join(t.TempDir(), "busybox.tar.gz")
	fp, err := testimage.BuildImage(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var last, total int64
	got, err := c.CreateImage(ctx, f, fi.Size(), client.ImageCreateArgs{Progress: func(sent, tot int64) { last, total = sent, tot }})
	if err != nil {
		t.Fatal(err)
	}
	if got != fp || last != fi.Size() || total != fi.Size() {
		t.Fatalf("CreateImage: fingerprint %s (want %s), progress %d/%d of %d", got, fp, last, total, fi.Size())
	}
	name, err := c.CreateInstance(ctx, api.InstancesPost{Source: api.InstanceSource{Type: "image", Fingerprint: fp}, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		t.Fatal("CreateInstance returned no name for a server-named instance")
	}
	if err := c.RenameInstance(ctx, name, "c1"); err == nil {
		t.Fatal("renamed a running instance")
	}
	t.Cleanup(func() {
		if err := c.DeleteInstance(context.Background(), name, true); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c, ctx
}

func TestIntegrationExecSignalsAndResize(t *testing.T) {
	c, ctx := withContainer(t)
	names, err := c.GetInstanceNames(ctx)
	if err != nil || len(names) != 1 {
		t.Fatalf("names %v %v", names, err)
	}
	name := names[0]

	// A signal sent on the control channel reaches the command, even
	// when it is sent before the command has started: Control runs
	// once the control channel is up, before the stdio websockets are.
	start := time.Now()
	code, err := c.ExecInstance(ctx, name, api.InstanceExecPost{Command: []string{"sleep", "30"}},
		client.ExecArgs{Control: func(ctl *client.ExecControl) {
			if err := ctl.Signal(int(syscall.SIGTERM)); err != nil {
				t.Errorf("signal: %v", err)
			}
		}})
	if err != nil || code != 128+int(syscall.SIGTERM) || time.Since(start) > 20*time.Second {
		t.Fatalf("signal before the start: code %d err %v after %v", code, err, time.Since(start))
	}
	// And a running command's handler gets it: sent once, when the
	// trap is in place.
	ready := make(chan struct{})
	var once sync.Once
	var out bytes.Buffer
	var outMu sync.Mutex
	stdout := writerFunc(func(p []byte) (int, error) {
		outMu.Lock()
		defer outMu.Unlock()
		out.Write(p)
		if strings.Contains(out.String(), "ready") {
			once.Do(func() { close(ready) })
		}
		return len(p), nil
	})
	code, err = c.ExecInstance(ctx, name, api.InstanceExecPost{Command: []string{"sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"}},
		client.ExecArgs{Stdout: stdout, Control: func(ctl *client.ExecControl) {
			go func() {
				select {
				case <-ready:
					_ = ctl.Signal(int(syscall.SIGTERM))
				case <-time.After(10 * time.Second):
				}
			}()
		}})
	if err != nil || code != 42 {
		t.Fatalf("signal: code %d err %v out %q", code, err, out.String())
	}

	// Interactive: a window resize reaches the pty.
	inR, inW := io.Pipe()
	var mu sync.Mutex
	var term strings.Builder
	ready = make(chan struct{})
	once = sync.Once{}
	stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		term.Write(p)
		if strings.Contains(term.String(), "ready") {
			once.Do(func() { close(ready) })
		}
		return len(p), nil
	})
	code, err = c.ExecInstance(ctx, name, api.InstanceExecPost{Command: []string{"sh", "-c", "stty -echo; echo ready; read x; stty size"}, Interactive: true, Width: 80, Height: 24},
		client.ExecArgs{Stdin: inR, Stdout: stdout, Control: func(ctl *client.ExecControl) {
			go func() {
				select {
				case <-ready:
				case <-time.After(10 * time.Second):
					return
				}
				_ = ctl.Resize(100, 40)
				time.Sleep(100 * time.Millisecond)
				inW.Write([]byte("\n"))
			}()
		}})
	if err != nil || code != 0 {
		t.Fatalf("interactive: code %d err %v out %q", code, err, term.String())
	}
	if !strings.Contains(term.String(), "40 100") {
		t.Fatalf("stty size after resize: %q", term.String())
	}
	inW.Close()

	// Files: write, stat, read back, list, delete.
	err = c.CreateInstanceFile(ctx, name, "/root/f", client.FileArgs{Content: strings.NewReader("abc"), Size: 3, UID: 5, GID: 6, Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	rc, info, err := c.GetInstanceFile(ctx, name, "/root/f")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "abc" || info.UID != 5 || info.GID != 6 || info.Mode != 0o600 || info.Type != "file" {
		t.Fatalf("file: %q %+v", data, info)
	}
	if _, info, err = c.GetInstanceFile(ctx, name, "/root"); err != nil || info.Type != "directory" || !strings.Contains(strings.Join(info.Entries, ","), "f") {
		t.Fatalf("dir: %+v %v", info, err)
	}
	if err := c.DeleteInstanceFile(ctx, name, "/root/f"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.GetInstanceFile(ctx, name, "/root/f"); !client.IsNotFound(err) {
		t.Fatalf("deleted file: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
