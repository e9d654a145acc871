package lxcdriver

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat/moat/internal/idmap"
	"github.com/moat/moat/internal/storage/overlay"
	"github.com/moat/moat/internal/testimage"
)

// testRoot holds everything the integration tests create; TestMain checks
// that no process still refers to it when the tests are done.
var testRoot string

func TestMain(m *testing.M) {
	// Re-executed as forkstart/forkexec by the code under test.
	RunHelper(os.Args)

	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // integration tests skip, or fail with CI=true
		}
		dir, err := os.MkdirTemp("/var/lib", "moat-lxctest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		testRoot = dir
		defer os.RemoveAll(dir)
		// Container roots must be able to traverse down to the
		// per-container dirs and disk sources.
		if err := os.Chmod(dir, 0o711); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := m.Run()
		if left := processesUsing(dir); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: processes left behind: %v\n", left)
			return 1
		}
		return code
	}()
	os.Exit(code)
}

// processesUsing lists processes whose command line mentions path, which
// catches leftover liblxc monitors ("[lxc monitor] LXCPATH NAME").
func processesUsing(path string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(path)) {
			out = append(out, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// requireHost fails (CI=true) or skips tests that need root and liblxc.
func requireHost(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "integration tests need root"
	case !fileExists(testimage.Busybox):
		why = "busybox-static is not installed"
	case testRoot == "":
		why = "test root not set up"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

var (
	rootfsOnce sync.Once
	rootfsPath string
	rootfsErr  error
	seq        atomic.Int64
)

// sharedRootfs builds one image for all tests. Containers only write to
// /tmp inside it, under names of their own.
func sharedRootfs(t testing.TB) string {
	rootfsOnce.Do(func() {
		rootfsPath = filepath.Join(testRoot, "rootfs")
		rootfsErr = testimage.BuildRootfs(rootfsPath)
	})
	if rootfsErr != nil {
		t.Fatal(rootfsErr)
	}
	return rootfsPath
}

// testSpec returns an unprivileged spec with an isolated map and a name
// unique across concurrent test runs on the host.
func testSpec(t testing.TB) Spec {
	requireHost(t)
	host, err := idmap.DiscoverHost()
	if err != nil {
		t.Fatal(err)
	}
	// Isolated slot per test; a clash with another run's map would be
	// harmless anyway (it only weakens isolation between test containers).
	base, err := idmap.AllocateIsolated(host.Allocatable(), idmap.DefaultIsolatedSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	set := host.Isolated(base, idmap.DefaultIsolatedSize)
	return Spec{
		Name:    fmt.Sprintf("moat-t%d-%d", os.Getpid(), seq.Add(1)),
		LXCPath: filepath.Join(testRoot, "lxc"),
		Rootfs:  containerRootfs(t, set),
		IDMap:   set,
	}
}

// containerRootfs mounts a rootfs the way moatd does (package overlay): an
// overlay of its own over the shared image, which it shows through set.
// The driver runs it as it is; the image is never written.
func containerRootfs(t testing.TB, set idmap.Set) string {
	t.Helper()
	dir, err := os.MkdirTemp(testRoot, "rootfs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	l := overlay.Layers{Lower: sharedRootfs(t), Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	target := filepath.Join(dir, "rootfs")
	for _, d := range []string{l.Upper, l.Work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := set.HostID(true, 0)
	if err := os.Chown(l.Upper, int(root), int(root)); err != nil {
		t.Fatal(err)
	}
	if err := overlay.Mount(l, target, set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := overlay.Unmount(target); err != nil {
			t.Error(err)
		}
		if err := overlay.RemoveTree(dir); err != nil {
			t.Error(err)
		}
	})
	return target
}

// startTest starts a container for spec and registers its cleanup, which
// also checks that nothing was left behind.
func startTest(t testing.TB, spec Spec) *Container {
	t.Helper()
	c, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		c.Delete()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(true, 0); err != nil && err != ErrNotRunning {
			t.Errorf("stop: %v", err)
		}
		if err := c.Delete(); err != nil {
			t.Errorf("delete: %v", err)
		}
		if left := leftovers(c.cg, spec.Name); len(left) > 0 {
			t.Errorf("cgroups left behind: %v", left)
		}
	})
	return c
}

// leftovers lists the container's cgroups that still exist.
func leftovers(cg *cgroups, name string) []string {
	var out []string
	for _, h := range cg.hier {
		for _, d := range []string{"lxc.monitor." + name, "lxc.payload." + name} {
			if fileExists(h.path(d)) {
				out = append(out, h.path(d))
			}
		}
	}
	return out
}

// run executes a command in c and returns exit code, stdout and stderr.
func run(t testing.TB, c *Container, cmd ...string) (int, string, string) {
	t.Helper()
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	p, err := c.Exec(ExecSpec{Command: cmd, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Stdout: outW, Stderr: errW})
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	done := make(chan struct{})
	go func() { stderr.ReadFrom(errR); close(done) }()
	stdout.ReadFrom(outR)
	<-done
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func pipe(t testing.TB) (*os.File, *os.File) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// stopTimeout bounds a clean stop in tests; the image's init exits on
// the halt signal at once, so reaching it means the stop was not clean.
const stopTimeout = 10 * time.Second
