package integration

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// asUser runs curl against the socket as uid/gid 65534 with the given
// supplementary groups (setpriv from util-linux), returning its output.
func asUser(t *testing.T, d *testdaemon.Daemon, groups string) (string, error) {
	return asUID(t, d, "65534", groups)
}

func asUID(t *testing.T, d *testdaemon.Daemon, uid, groups string) (string, error) {
	t.Helper()
	for _, tool := range []string{"setpriv", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed for this test: %v", tool, err)
		}
	}
	args := []string{"--reuid=" + uid, "--regid=" + uid}
	if groups == "" {
		args = append(args, "--clear-groups")
	} else {
		args = append(args, "--groups="+groups)
	}
	args = append(args, "curl", "-sS", "--unix-socket", d.Socket(), "http://moat/1.0")
	out, err := exec.Command("setpriv", args...).CombinedOutput()
	return string(out), err
}

func TestSocketAccessByGroup(t *testing.T) {
	d := testdaemon.Start(t)
	fi, err := os.Stat(d.Socket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	if di, _ := os.Stat(d.Dir); di.Mode().Perm() != 0o711 {
		t.Fatalf("state dir mode %v, want 0711", di.Mode().Perm())
	}

	// A user outside the admin group cannot even connect.
	// curl reports connect(2) failing with EACCES as exit status 7; the
	// group member below proves the socket itself is there and answering.
	out, err := asUser(t, d, "")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("uid 65534 without the group connected: err=%v out=%s", err, out)
	}
	// A member of the admin group is a full admin, named by its uid.
	g, err := user.LookupGroup(testdaemon.Group)
	if err != nil {
		t.Fatal(err)
	}
	out, err = asUser(t, d, g.Gid)
	if err != nil || !strings.Contains(out, `"auth":"trusted"`) || !strings.Contains(out, `"auth_user_name":"nobody"`) {
		t.Fatalf("admin group member: err=%v out=%.300s", err, out)
	}
	// A uid without a passwd entry is named uid=N.
	out, err = asUID(t, d, "54321", g.Gid)
	if err != nil || !strings.Contains(out, `"auth_user_name":"uid=54321"`) {
		t.Fatalf("nameless uid: err=%v out=%.300s", err, out)
	}
	// Nothing else in the state directory is readable by others.
	entries, _ := os.ReadDir(d.Dir)
	for _, e := range entries {
		fi, _ := e.Info()
		// Directories may be traversable (0711: containers' mapped root
		// must reach their rootfs), never listable or writable by others.
		mask := os.FileMode(0o077)
		if fi.IsDir() {
			mask = 0o066
		}
		if e.Name() != "unix.socket" && fi.Mode().Perm()&mask != 0 {
			t.Errorf("%s is mode %v: open to others", e.Name(), fi.Mode().Perm())
		}
	}
}

func TestSingleDaemonPerStateDir(t *testing.T) {
	d := testdaemon.Start(t)
	out, err := exec.Command(testdaemon.Binary(t), "--state-dir", d.Dir, "--group", testdaemon.Group).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another moatd is already running") {
		t.Fatalf("second moatd: err=%v out=%s", err, out)
	}
	// The first one still answers.
	if r := d.Do("GET", "/1.0", nil); r.Status != 200 {
		t.Fatalf("first daemon broken: %d", r.Status)
	}
}

func TestUnknownGroupIsAStartupError(t *testing.T) {
	testdaemon.RequireRoot(t)
	dir := t.TempDir()
	out, err := exec.Command(testdaemon.Binary(t), "--state-dir", dir, "--group", "no-such-group-moat").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `admin group "no-such-group-moat" does not exist`) {
		t.Fatalf("err=%v out=%s", err, out)
	}
}

func TestStaleSocketAndGracefulStop(t *testing.T) {
	d := testdaemon.Start(t)
	d.Kill()
	if _, err := os.Stat(d.Socket()); err != nil {
		t.Fatalf("a killed daemon should leave its socket behind for this test: %v", err)
	}
	d.Restart()
	if r := d.Do("GET", "/1.0", nil); r.Status != 200 {
		t.Fatalf("after restart over a stale socket: %d", r.Status)
	}
	pid := d.PID()
	d.Stop()
	if _, err := os.Stat(d.Socket()); !os.IsNotExist(err) {
		t.Fatalf("socket left after graceful stop: %v", err)
	}
	if err := exec.Command("kill", "-0", fmt.Sprint(pid)).Run(); err == nil {
		t.Fatal("daemon still running after SIGTERM")
	}
	d.Restart()
}

// TestCrashSafety kills the daemon with SIGKILL while clients write, and
// checks that every acknowledged change survived and nothing is half-written.
func TestCrashSafety(t *testing.T) {
	d := testdaemon.Start(t)
	for round := 0; round < 3; round++ {
		var acked sync.Map
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c := d.HTTPClient()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("r%dw%di%d", round, w, i)
					body := fmt.Sprintf(`{"name":%q,"config":{"user.a":"1","user.b":"2","limits.cpu":"2"}}`, name)
					req, _ := newRequest("POST", "/1.0/projects", body)
					resp, err := c.Do(req)
					if err != nil {
						return // the daemon died
					}
					resp.Body.Close()
					if resp.StatusCode == 201 {
						acked.Store(name, true)
						n.Add(1)
					}
				}
			}(w)
		}
		for n.Load() < int64(10+round*15) {
			time.Sleep(time.Millisecond)
		}
		d.Kill()
		close(stop)
		wg.Wait()
		d.Restart()

		var projects []api.Project
		d.Do("GET", "/1.0/projects?recursion=1", nil).Metadata(t, &projects)
		seen := map[string]bool{}
		for _, p := range projects {
			seen[p.Name] = true
			if p.Name == "default" {
				continue
			}
			// Each project was written in one transaction: all of its
			// config rows or none of the project.
			if p.Config["user.a"] != "1" || p.Config["user.b"] != "2" || p.Config["limits.cpu"] != "2" || p.Config["features.images"] != "true" {
				t.Fatalf("half-written project %s: %v", p.Name, p.Config)
			}
		}
		acked.Range(func(k, _ any) bool {
			if !seen[k.(string)] {
				t.Errorf("acknowledged project %s lost in the crash", k)
			}
			return true
		})
	}
}
