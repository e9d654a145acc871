package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
	"github.com/moat/moat/internal/testimage"
)

// probingInit runs the probes as children of the container's init, which
// liblxc's seccomp policy confines (exec'd commands get Moat's own filter
// instead, tested in internal/instance/lxc), records what they got, then
// behaves as the image's init does.
const probingInit = `#!/bin/sh
/probe/obh64; echo "obh64 $?" > /probe/out
/probe/obh32; echo "obh32 $?" >> /probe/out
umount -f /nonexistent 2>> /probe/out
echo done >> /probe/out
trap 'exit 0' PWR TERM
while :; do sleep 1 & wait; done
`

// TestSeccompConfinesInitsTree: the default deny list holds for the
// processes of the container itself (init and what it runs), not only for
// exec'd commands: open_by_handle_at through the native and the i386
// entry is refused with EPERM, and a forced unmount with EACCES, in an
// unprivileged and a privileged container.
func TestSeccompConfinesInitsTree(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc is needed to build the syscall probes: %v", err)
	}
	// open_by_handle_at(-1, NULL, 0) fails with EFAULT (14) unfiltered and
	// EPERM (1) under the deny list.
	dir := t.TempDir()
	if err := testimage.BuildSyscallProbe(filepath.Join(dir, "obh64"), 304, true); err != nil {
		t.Fatal(err)
	}
	if err := testimage.BuildSyscallProbe(filepath.Join(dir, "obh32"), 342, false); err != nil {
		t.Fatal(err)
	}
	d, _ := withImage(t)
	push := func(name, path string, body []byte, mode string, kind string) {
		t.Helper()
		hdr := map[string]string{"X-LXD-mode": mode, "X-LXD-type": kind, "X-LXD-write": "overwrite"}
		var content any = string(body)
		if kind == "directory" {
			content = nil
		}
		if r := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/"+name+"/files?path="+path, content, hdr); r.Status != 200 {
			t.Fatalf("push %s to %s: %d %s", path, name, r.Status, r.Raw)
		}
	}
	for _, c := range []struct {
		name string
		cfg  map[string]string
	}{{"sc-unpriv", nil}, {"sc-priv", map[string]string{"security.privileged": "true"}}} {
		launch(t, d, c.name, c.cfg)
		push(c.name, "/probe", nil, "0755", "directory")
		for _, p := range []string{"obh64", "obh32"} {
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			push(c.name, "/probe/"+p, b, "0755", "file")
		}
		push(c.name, "/sbin/init", []byte(probingInit), "0755", "file")
		mustSucceed(t, d, d.Do("PUT", "/1.0/instances/"+c.name+"/state", map[string]any{"action": "restart", "force": true}))
		var out string
		for range 200 {
			if code, o := execOut(t, d, c.name, "cat", "/probe/out"); code == 0 && strings.Contains(o, "done") {
				out = o
				break
			}
		}
		for _, want := range []string{"obh64 1\n", "obh32 1\n", "Permission denied"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the probes run by init lack %q:\n%s", c.name, strings.TrimSpace(want), out)
			}
		}
		t.Log(c.name, fmt.Sprintf("%q", out))
	}
}
