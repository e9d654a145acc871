package main

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
	"github.com/moat/moat/internal/testimage"
)

// imageCLI starts a daemon, imports the busybox image as "bb" with the
// CLI, and deletes every instance left at the end of the test.
func imageCLI(t *testing.T) (*cli, string) {
	t.Helper()
	path, fp := testdaemon.BusyboxImage(t)
	c := newCLI(t)
	out, errOut, code := c.run("image", "import", path, "--alias", "bb")
	if code != 0 {
		t.Fatalf("image import: exit %d, stderr %q", code, errOut)
	}
	if want := "Image imported with fingerprint: " + fp + "\n"; out != want {
		t.Fatalf("image import printed %q, want %q", out, want)
	}
	if !strings.Contains(errOut, "Transferring image: 100%") {
		t.Fatalf("image import shows no progress on stderr: %q", errOut)
	}
	t.Cleanup(func() {
		for _, r := range csvRows(t, c, "list", "--format", "csv") {
			if _, errOut, code := c.run("delete", "-f", r[0]); code != 0 {
				t.Errorf("cleanup: delete -f %s: %s", r[0], errOut)
			}
		}
		if rows := csvRows(t, c, "list", "--format", "csv"); len(rows) != 0 {
			t.Errorf("cleanup: instances left: %v", rows)
		}
	})
	return c, fp
}

func csvRows(t *testing.T, c *cli, args ...string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(c.ok(args...))).ReadAll()
	if err != nil {
		t.Fatalf("moat %s: not CSV: %v", strings.Join(args, " "), err)
	}
	return rows
}

// state is the STATE column of `list --format csv` for name ("" if absent).
func state(t *testing.T, c *cli, name string) string {
	t.Helper()
	for _, r := range csvRows(t, c, "list", "--format", "csv") {
		if len(r) != 6 {
			t.Fatalf("list csv row %q has %d columns, want 6", r, len(r))
		}
		if r[0] == name {
			return r[1]
		}
	}
	return ""
}

// errs runs args and checks they exit 1 with "Error: ..." containing want.
func (c *cli) errs(want string, args ...string) string {
	c.t.Helper()
	_, errOut, code := c.run(args...)
	if code != 1 || !strings.HasPrefix(errOut, "Error: ") || !strings.Contains(errOut, want) {
		c.t.Fatalf("moat %s: exit %d, stderr %q, want exit 1 and an error containing %q", strings.Join(args, " "), code, errOut, want)
	}
	return errOut
}

func TestImageImportAliasesAndList(t *testing.T) {
	c, fp := imageCLI(t)
	rows := csvRows(t, c, "image", "list", "--format", "csv")
	if len(rows) != 1 || rows[0][0] != "bb" || rows[0][1] != fp[:12] || rows[0][2] != "NO" || rows[0][3] != testimage.Description {
		t.Fatalf("image list: %q", rows)
	}
	var img api.Image
	if err := yaml.Unmarshal([]byte(c.ok("image", "show", "bb")), &img); err != nil {
		t.Fatal(err)
	}
	if img.Fingerprint != fp || img.Filename != "busybox.tar.gz" {
		t.Fatalf("image show bb: %+v", img)
	}
	c.ok("image", "alias", "create", "other", fp[:12])
	var aliases []api.ImageAlias
	if err := json.Unmarshal([]byte(c.ok("image", "alias", "list", "--format", "json")), &aliases); err != nil {
		t.Fatal(err)
	}
	if len(aliases) != 2 || aliases[0].Name != "bb" || aliases[1].Name != "other" || aliases[1].Target != fp {
		t.Fatalf("alias list: %+v", aliases)
	}
	c.ok("image", "alias", "delete", "other")
	if rows := csvRows(t, c, "image", "alias", "list", "--format", "csv"); len(rows) != 1 || rows[0][0] != "bb" {
		t.Fatalf("alias list after delete: %q", rows)
	}
	c.errs("not found", "image", "show", "nosuchimage")
	// Importing the same image again is refused by the server.
	imagePath, _ := testdaemon.BusyboxImage(t)
	_, errOut, code := c.run("image", "import", imagePath)
	if code != 1 || !strings.Contains(errOut, "Error: ") {
		t.Fatalf("second import: exit %d, stderr %q", code, errOut)
	}

	// The pool is there for launches.
	rows = csvRows(t, c, "storage", "list", "--format", "csv")
	if len(rows) != 1 || rows[0][0] != "default" || rows[0][1] != "dir" {
		t.Fatalf("storage list: %q", rows)
	}
	var pool api.StoragePool
	if err := yaml.Unmarshal([]byte(c.ok("storage", "show", "default")), &pool); err != nil || pool.Driver != "dir" {
		t.Fatalf("storage show: %+v %v", pool, err)
	}

	c.ok("image", "delete", "bb")
	if rows := csvRows(t, c, "image", "list", "--format", "csv"); len(rows) != 0 {
		t.Fatalf("image list after delete: %q", rows)
	}
}

func TestLaunchListInfoExec(t *testing.T) {
	c, fp := imageCLI(t)
	if out := c.ok("launch", "bb", "c1", "-c", "user.note=hi"); out != "Creating c1\nStarting c1\n" {
		t.Fatalf("launch printed %q", out)
	}
	c.ok("init", fp[:16], "c2", "--ephemeral")

	table := c.ok("list")
	if !regexp.MustCompile(`(?m)^\| c1 +\| RUNNING +\|.*\| CONTAINER +\| 0 +\|$`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^\| c2 +\| STOPPED +\|.*\| CONTAINER \(EPHEMERAL\) +\| 0 +\|$`).MatchString(table) ||
		!strings.Contains(table, "| NAME | STATE") {
		t.Fatalf("list table:\n%s", table)
	}
	rows := csvRows(t, c, "list", "--format", "csv")
	if len(rows) != 2 || rows[0][0] != "c1" || rows[0][1] != "RUNNING" || rows[1][0] != "c2" || rows[1][1] != "STOPPED" {
		t.Fatalf("list csv: %q", rows)
	}
	var full []api.InstanceFull
	if err := json.Unmarshal([]byte(c.ok("list", "--format", "json")), &full); err != nil {
		t.Fatal(err)
	}
	if len(full) != 2 || full[0].Name != "c1" || full[0].State == nil || full[0].State.Pid == 0 ||
		full[0].Config["user.note"] != "hi" || full[0].Config["volatile.base_image"] != fp || !full[1].Ephemeral {
		t.Fatalf("list json: %+v", full)
	}
	var y []map[string]any
	if err := yaml.Unmarshal([]byte(c.ok("list", "--format", "yaml")), &y); err != nil || len(y) != 2 || y[0]["name"] != "c1" {
		t.Fatalf("list yaml: %v %v", y, err)
	}
	if rows := csvRows(t, c, "list", "--format", "csv", "status=running"); len(rows) != 1 || rows[0][0] != "c1" {
		t.Fatalf("list status=running: %q", rows)
	}

	info := c.ok("info", "c1")
	if !strings.Contains(info, "Name: c1\nStatus: RUNNING\nType: container\n") ||
		!regexp.MustCompile(`\nPID: [1-9][0-9]*\n`).MatchString(info) ||
		!regexp.MustCompile(`\n  Processes: [1-9][0-9]*\n`).MatchString(info) ||
		!strings.Contains(info, "Memory (current): ") || !strings.Contains(info, "CPU usage (in seconds): ") {
		t.Fatalf("info c1:\n%s", info)
	}
	// Without an instance, info is still the server's.
	if out := c.ok("info"); !strings.Contains(out, "api_version: \"1.0\"") && !strings.Contains(out, "api_version: 1.0") {
		t.Fatalf("server info:\n%s", out)
	}
	c.errs("Instance not found", "info", "nope")

	// Exit codes propagate, stdout and stderr are separate.
	out, errOut, code := c.run("exec", "c1", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if code != 3 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("exec exit 3: code %d stdout %q stderr %q", code, out, errOut)
	}
	if out := c.ok("exec", "c1", "--env", "FOO=bar baz", "--cwd", "/tmp", "--", "sh", "-c", `echo "$FOO" $(pwd) $(id -u)`); out != "bar baz /tmp 0\n" {
		t.Fatalf("exec env/cwd: %q", out)
	}
	if out := c.ok("exec", "c1", "--user", "1000", "--group", "1000", "--", "id", "-u"); out != "1000\n" {
		t.Fatalf("exec --user: %q", out)
	}
	// stdin reaches the command and its end closes it.
	big := strings.Repeat("0123456789abcdef", 64<<10/16) // 64 KiB, more than one frame
	out, errOut, code = c.runIn("hello\n"+big, "exec", "c1", "--", "sh", "-c", "read -r line; echo \"$line\"; wc -c")
	if code != 0 || out != "hello\n65536\n" {
		t.Fatalf("exec stdin: code %d out %q err %q", code, out, errOut)
	}
	// -t: a pseudo-terminal even without a local terminal.
	out, errOut, code = c.runIn("", "exec", "-t", "c1", "--", "sh", "-c", "test -t 0 && test -t 1 && echo tty; exit 4")
	if code != 4 || out != "tty\r\n" || errOut != "" {
		t.Fatalf("exec -t: code %d out %q err %q", code, out, errOut)
	}
	c.errs("Instance is not running", "exec", "c2", "--", "true")
	if _, errOut, code := c.run("exec", "c1", "--", "/no/such/binary"); code == 0 {
		t.Fatalf("exec of a missing binary succeeded: %q", errOut)
	}
}

func TestFilePushPullDelete(t *testing.T) {
	c, _ := imageCLI(t)
	c.ok("launch", "bb", "f1")
	src := filepath.Join(t.TempDir(), "data.bin")
	content := []byte("line one\n\x00binary\xff\n")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok("file", "push", src, "f1/root/pushed", "--mode", "0640", "--uid", "1000", "--gid", "1001")
	if out := c.ok("exec", "f1", "--", "stat", "-c", "%u:%g:%a", "/root/pushed"); out != "1000:1001:640\n" {
		t.Fatalf("pushed file owner/mode inside: %q", out)
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	c.ok("file", "pull", "f1/root/pushed", dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(content) {
		t.Fatalf("round trip: %q, want %q", got, content)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o640 {
		t.Fatalf("pulled mode %v, want 0640", fi.Mode().Perm())
	}
	// Defaults: the local file's mode; a target ending in / takes the name.
	c.ok("file", "push", src, "f1/tmp/")
	if out := c.ok("exec", "f1", "--", "stat", "-c", "%a", "/tmp/data.bin"); out != "600\n" {
		t.Fatalf("default mode: %q", out)
	}
	// Written inside, read outside; - is stdout.
	c.ok("exec", "f1", "--", "sh", "-c", "echo from-inside > /root/made")
	if out := c.ok("file", "pull", "f1/root/made", "-"); out != "from-inside\n" {
		t.Fatalf("pull to stdout: %q", out)
	}
	c.ok("file", "delete", "f1/root/pushed")
	c.errs("not found", "file", "pull", "f1/root/pushed", dst)
	c.errs("invalid target", "file", "pull", "f1", dst)
}

func TestInstanceConfigDevicesProfiles(t *testing.T) {
	c, _ := imageCLI(t)
	c.ok("launch", "bb", "k1")

	c.ok("config", "set", "k1", "limits.memory", "64MiB")
	if out := c.ok("config", "get", "k1", "limits.memory"); out != "64MiB\n" {
		t.Fatalf("config get limits.memory: %q", out)
	}
	c.ok("config", "set", "k1", "user.a=1", "user.b=2")
	var show struct {
		Config  map[string]string `yaml:"config"`
		Name    string            `yaml:"name"`
		Profile []string          `yaml:"profiles"`
	}
	if err := yaml.Unmarshal([]byte(c.ok("config", "show", "k1")), &show); err != nil {
		t.Fatal(err)
	}
	if show.Name != "k1" || show.Config["user.a"] != "1" || show.Config["user.b"] != "2" || show.Config["limits.memory"] != "64MiB" {
		t.Fatalf("config show k1: %+v", show)
	}
	c.ok("config", "unset", "k1", "user.a")
	if out := c.ok("config", "get", "k1", "user.a"); out != "\n" {
		t.Fatalf("after unset: %q", out)
	}
	// Invalid keys and values: the server's message, exit 1, nothing changed.
	c.errs("bogus.key", "config", "set", "k1", "bogus.key", "1")
	c.errs("limits.memory", "config", "set", "k1", "limits.memory", "lots")
	if out := c.ok("config", "get", "k1", "limits.memory"); out != "64MiB\n" {
		t.Fatalf("limits.memory after a refused set: %q", out)
	}
	// The server config is still reachable the lxc way.
	c.ok("config", "set", "user.server", "yes")
	if out := c.ok("config", "get", "user.server"); out != "yes\n" {
		t.Fatalf("server config get: %q", out)
	}
	if _, errOut, code := c.runIn("config:\n  user.edited: \"1\"\nprofiles: [default]\n", "config", "edit", "k1"); code != 0 {
		t.Fatalf("config edit k1: %s", errOut)
	}
	if out := c.ok("config", "get", "k1", "user.edited"); out != "1\n" {
		t.Fatalf("after edit: %q", out)
	}

	// A read-only disk: readable inside, a write fails.
	host, err := os.MkdirTemp("", "moat-cli-disk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	if err := os.Chmod(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "hello"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("config", "device", "add", "k1", "ro", "disk", "source="+host, "path=/mnt/ro", "readonly=true")
	if out := c.ok("config", "device", "list", "k1"); out != "ro\n" {
		t.Fatalf("device list: %q", out)
	}
	var devs map[string]map[string]string
	if err := yaml.Unmarshal([]byte(c.ok("config", "device", "show", "k1")), &devs); err != nil || devs["ro"]["readonly"] != "true" || devs["ro"]["type"] != "disk" {
		t.Fatalf("device show: %v %v", devs, err)
	}
	c.errs("already exists", "config", "device", "add", "k1", "ro", "disk", "source="+host, "path=/mnt/x")
	c.ok("restart", "k1", "--timeout", "10")
	if out := c.ok("exec", "k1", "--", "cat", "/mnt/ro/hello"); out != "from host\n" {
		t.Fatalf("read through the disk device: %q", out)
	}
	if _, _, code := c.run("exec", "k1", "--", "touch", "/mnt/ro/new"); code == 0 {
		t.Fatal("write to a readonly disk succeeded")
	}
	if _, err := os.Stat(filepath.Join(host, "new")); err == nil {
		t.Fatal("the readonly disk was written to")
	}
	c.ok("config", "device", "remove", "k1", "ro")
	if out := c.ok("config", "device", "list", "k1"); out != "" {
		t.Fatalf("device list after remove: %q", out)
	}
	c.errs("doesn't exist", "config", "device", "remove", "k1", "ro")

	// Profiles.
	c.ok("profile", "create", "p1")
	c.ok("profile", "set", "p1", "limits.processes", "200")
	c.ok("profile", "set", "p1", "user.p=x")
	if out := c.ok("profile", "get", "p1", "limits.processes"); out != "200\n" {
		t.Fatalf("profile get: %q", out)
	}
	c.errs("limits.processes", "profile", "set", "p1", "limits.processes=-1")
	c.ok("profile", "add", "k1", "p1")
	if out := c.ok("config", "get", "k1", "limits.processes", "--expanded"); out != "200\n" {
		t.Fatalf("expanded limits.processes after profile add: %q", out)
	}
	var p api.Profile
	if err := yaml.Unmarshal([]byte(c.ok("profile", "show", "p1")), &p); err != nil || len(p.UsedBy) != 1 || !strings.Contains(p.UsedBy[0], "k1") {
		t.Fatalf("profile show: %+v %v", p, err)
	}
	rows := csvRows(t, c, "profile", "list", "--format", "csv")
	if len(rows) != 2 || rows[0][0] != "default" || rows[1][0] != "p1" || rows[1][2] != "1" {
		t.Fatalf("profile list: %q", rows)
	}
	c.errs("in use", "profile", "delete", "p1")
	c.errs("already applied", "profile", "add", "k1", "p1")
	c.ok("profile", "device", "add", "p1", "pdisk", "disk", "source="+host, "path=/mnt/p", "readonly=true")
	c.errs("comes from a profile", "config", "device", "remove", "k1", "pdisk")
	c.ok("profile", "device", "remove", "p1", "pdisk")
	c.ok("profile", "remove", "k1", "p1")
	if out := c.ok("config", "get", "k1", "limits.processes", "--expanded"); out != "\n" {
		t.Fatalf("expanded limits.processes after profile remove: %q", out)
	}
	c.ok("profile", "rename", "p1", "p2")
	if _, errOut, code := c.runIn("config:\n  user.q: \"y\"\ndescription: edited\n", "profile", "edit", "p2"); code != 0 {
		t.Fatalf("profile edit: %s", errOut)
	}
	if out := c.ok("profile", "get", "p2", "user.q"); out != "y\n" {
		t.Fatalf("after profile edit: %q", out)
	}
	c.ok("profile", "delete", "p2")
	if rows := csvRows(t, c, "profile", "list", "--format", "csv"); len(rows) != 1 {
		t.Fatalf("profile list after delete: %q", rows)
	}
}

func TestStateActionsRenameDelete(t *testing.T) {
	c, _ := imageCLI(t)
	c.ok("launch", "bb", "s1")
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"stop", "s1", "--timeout", "10"}, "STOPPED"},
		{[]string{"start", "s1"}, "RUNNING"},
		{[]string{"restart", "s1", "--timeout", "10"}, "RUNNING"},
		{[]string{"pause", "s1"}, "FROZEN"},
		{[]string{"resume", "s1"}, "RUNNING"},
		{[]string{"stop", "s1", "--force"}, "STOPPED"},
	}
	for _, s := range steps {
		c.ok(s.args...)
		if got := state(t, c, "s1"); got != s.want {
			t.Fatalf("after %v: state %q, want %q", s.args, got, s.want)
		}
	}
	c.errs("already stopped", "stop", "s1")
	c.ok("rename", "s1", "s2")
	if state(t, c, "s1") != "" || state(t, c, "s2") != "STOPPED" {
		t.Fatalf("after rename: %q", csvRows(t, c, "list", "--format", "csv"))
	}
	c.ok("start", "s2")
	c.errs("Renaming of running instance not allowed", "rename", "s2", "s3")
	c.errs("stop it first or use force", "delete", "s2")
	c.ok("delete", "-f", "s2")
	if rows := csvRows(t, c, "list", "--format", "csv"); len(rows) != 0 {
		t.Fatalf("after delete -f: %q", rows)
	}
	c.errs(`not found`, "start", "s2")
	c.errs("not found", "launch", "nosuchimage", "x1")
	// An ephemeral instance goes away when it stops.
	c.ok("launch", "bb", "e1", "--ephemeral")
	c.ok("stop", "e1", "--force")
	if got := state(t, c, "e1"); got != "" {
		t.Fatalf("ephemeral instance still listed after stop: %q", got)
	}
}
