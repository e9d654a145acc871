package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
)

func TestInfoShowsTrusted(t *testing.T) {
	c := newCLI(t)
	var info struct {
		Auth       string   `yaml:"auth"`
		AuthMethod string   `yaml:"auth_user_method"`
		APIVersion string   `yaml:"api_version"`
		Extensions []string `yaml:"api_extensions"`
		Env        struct {
			Project string `yaml:"project"`
		} `yaml:"environment"`
	}
	out := c.ok("info")
	if err := yaml.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info is not YAML: %v\n%s", err, out)
	}
	if info.Auth != "trusted" || info.AuthMethod != "unix" || info.APIVersion != "1.0" || len(info.Extensions) == 0 {
		t.Fatalf("info: %+v", info)
	}
	if !strings.Contains(out, "\nauth: trusted\n") {
		t.Fatalf("info does not show auth: trusted:\n%s", out)
	}
	if info.Env.Project != "default" {
		t.Fatalf("environment.project = %q", info.Env.Project)
	}
	// The explicit local remote is the same daemon; others don't exist yet.
	c.ok("info", "local:")
	c.fails(`remote "other" doesn't exist`, "info", "other:")
}

func TestStateDirFlagWinsOverEnv(t *testing.T) {
	c := newCLI(t)
	c.env["MOAT_DIR"] = filepath.Join(t.TempDir(), "nothing-here")
	_, errOut, code := c.run("info")
	if code != 1 || !strings.HasPrefix(errOut, "Error: cannot connect to moatd at "+c.env["MOAT_DIR"]) {
		t.Fatalf("bad MOAT_DIR: exit %d, stderr %q", code, errOut)
	}
	c.ok("--state-dir", c.d.Dir, "info")
}

func TestConfigRoundTrip(t *testing.T) {
	c := newCLI(t)
	c.ok("config", "set", "core.remote_token_expiry", "30M")
	if got := c.ok("config", "get", "core.remote_token_expiry"); got != "30M\n" {
		t.Fatalf("get after set: %q", got)
	}
	c.ok("config", "set", "user.a=1", "user.b=two words")
	var show api.ServerPut
	if err := yaml.Unmarshal([]byte(c.ok("config", "show")), &show); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"core.remote_token_expiry": "30M", "user.a": "1", "user.b": "two words"}
	if len(show.Config) != len(want) {
		t.Fatalf("config show: %v, want %v", show.Config, want)
	}
	for k, v := range want {
		if show.Config[k] != v {
			t.Fatalf("config show: %s = %q, want %q", k, show.Config[k], v)
		}
	}
	c.ok("config", "unset", "user.a")
	if got := c.ok("config", "get", "user.a"); got != "\n" {
		t.Fatalf("get after unset: %q", got)
	}

	c.fails(`Unknown server configuration key "foo"`, "config", "set", "foo", "bar")
	c.fails(`invalid key=value pair "novalue"`, "config", "set", "user.x=1", "novalue")
	// A refused change leaves the config as it was.
	if got := c.ok("config", "get", "user.b"); got != "two words\n" {
		t.Fatalf("config changed by a failed set: user.b = %q", got)
	}

	// Not a terminal: edit reads the new config from stdin.
	if _, errOut, code := c.runIn("config:\n  user.edited: \"yes\"\n", "config", "edit"); code != 0 {
		t.Fatalf("config edit: %s", errOut)
	}
	show = api.ServerPut{}
	if err := yaml.Unmarshal([]byte(c.ok("config", "show")), &show); err != nil {
		t.Fatal(err)
	}
	if len(show.Config) != 1 || show.Config["user.edited"] != "yes" {
		t.Fatalf("after edit: %v", show.Config)
	}
	if _, errOut, code := c.runIn("config:\n  bogus.key: 1\n", "config", "edit"); code != 1 || errOut != "Error: Unknown server configuration key \"bogus.key\"\n" {
		t.Fatalf("bad edit: exit %d, stderr %q", code, errOut)
	}
}

// projectRows parses `project list --format csv` into name -> row.
func projectRows(t *testing.T, c *cli) map[string][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(c.ok("project", "list", "--format", "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, r := range rows {
		if len(r) != 8 {
			t.Fatalf("csv row %q has %d columns, want 8", r, len(r))
		}
		out[r[0]] = r
	}
	return out
}

func TestProjectCommands(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("project", "create", "p1", "--config", "user.owner=alice", "-c", "features.profiles=false", "--description", "first"); out != "Project p1 created\n" {
		t.Fatalf("create printed %q", out)
	}
	if out := c.ok("--quiet", "project", "create", "p3"); out != "" {
		t.Fatalf("--quiet create printed %q", out)
	}
	c.fails(`invalid key=value pair "oops"`, "project", "create", "p4", "--config", "oops")

	var list []api.Project
	if err := json.Unmarshal([]byte(c.ok("project", "list", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.Project{}
	for _, p := range list {
		byName[p.Name] = p
	}
	p1 := byName["p1"]
	if len(list) != 3 || byName["default"].Name == "" || p1.Description != "first" || p1.Config["user.owner"] != "alice" || p1.Config["features.profiles"] != "false" {
		t.Fatalf("project list json: %+v", list)
	}

	rows := projectRows(t, c)
	if rows["default (current)"] == nil || rows["p1"] == nil {
		t.Fatalf("csv rows: %v", rows)
	}
	if r := rows["p1"]; r[2] != "NO" || r[1] != "YES" || r[6] != "first" || r[7] != "0" {
		t.Fatalf("p1 row: %q", r)
	}

	c.ok("project", "set", "p1", "user.size", "large")
	c.ok("project", "set", "p1", "user.a=1", "user.b=2")
	if got := c.ok("project", "get", "p1", "user.size"); got != "large\n" {
		t.Fatalf("project get: %q", got)
	}
	c.ok("project", "unset", "p1", "user.a")
	var shown api.Project
	if err := yaml.Unmarshal([]byte(c.ok("project", "show", "p1")), &shown); err != nil {
		t.Fatal(err)
	}
	if _, ok := shown.Config["user.a"]; ok || shown.Config["user.b"] != "2" || shown.Name != "p1" || shown.Description != "first" {
		t.Fatalf("project show: %+v", shown)
	}
	c.fails(`Unknown project configuration key "bogus"`, "project", "set", "p1", "bogus", "1")

	edited := "description: edited\nconfig:\n  user.only: \"1\"\n"
	if _, errOut, code := c.runIn(edited, "project", "edit", "p1"); code != 0 {
		t.Fatalf("project edit: %s", errOut)
	}
	shown = api.Project{}
	if err := yaml.Unmarshal([]byte(c.ok("project", "show", "p1")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Description != "edited" || len(shown.Config) != 1 || shown.Config["user.only"] != "1" {
		t.Fatalf("after edit: %+v", shown)
	}

	// switch is stored in the config file and marked by list.
	c.ok("project", "switch", "p1")
	conf, err := os.ReadFile(filepath.Join(c.env["MOAT_CONF"], "config.yml"))
	if err != nil || !strings.Contains(string(conf), "project: p1") {
		t.Fatalf("config file after switch: %q %v", conf, err)
	}
	if rows := projectRows(t, c); rows["p1 (current)"] == nil || rows["default"] == nil {
		t.Fatalf("after switch: %v", rows)
	}
	// --project overrides the current project.
	if out := c.ok("--project", "p3", "project", "list", "-f", "csv"); !strings.Contains(out, "p3 (current),") {
		t.Fatalf("--project p3 list: %q", out)
	}
	c.fails(`Project "nope" not found`, "project", "switch", "nope")

	if out := c.ok("project", "rename", "p1", "p2"); out != "Project p1 renamed to p2\n" {
		t.Fatalf("rename printed %q", out)
	}
	if rows := projectRows(t, c); rows["p2 (current)"] == nil || rows["p1"] != nil {
		t.Fatalf("after rename: %v", rows)
	}
	c.fails("The 'default' project cannot be deleted", "project", "delete", "default")
	c.ok("project", "delete", "p2", "p3")
	rows = projectRows(t, c)
	if len(rows) != 1 || rows["default (current)"] == nil {
		t.Fatalf("after delete: %v", rows)
	}
	c.fails(`remote "far" doesn't exist`, "project", "show", "far:p1")
}

func TestOperationListEmpty(t *testing.T) {
	c := newCLI(t)
	out := c.ok("operation", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "| ID ") || !strings.Contains(lines[1], "| CANCELABLE |") {
		t.Fatalf("empty table: %q", out)
	}
	if out := c.ok("operation", "list", "--format", "json", "--all-projects"); out != "[]\n" {
		t.Fatalf("empty json: %q", out)
	}
	if out := c.ok("operation", "list", "--format", "csv"); out != "" {
		t.Fatalf("empty csv: %q", out)
	}
	c.fails(`invalid format "xml": use table, json, yaml or csv`, "operation", "list", "--format", "xml")
	c.fails("Operation not found", "operation", "show", "00000000-0000-0000-0000-000000000000")
}

// startMonitor runs `moat monitor args...` until the test ends and returns
// its output once it is subscribed.
func startMonitor(t *testing.T, c *cli, args ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{changed: make(chan struct{}, 1)}
	var errOut syncBuffer
	subscribed := make(chan struct{})
	a := c.app("", out, &errOut)
	a.onListen = func() { close(subscribed) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- a.run(ctx, append([]string{"monitor"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("monitor exited %d: %s", code, errOut.String())
		}
	})
	select {
	case <-subscribed:
	case code := <-done:
		t.Fatalf("monitor exited %d before subscribing: %s", code, errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatal("monitor did not subscribe within 10s")
	}
	return out
}

func TestMonitorLifecycle(t *testing.T) {
	c := newCLI(t)
	out := startMonitor(t, c, "--type", "lifecycle")
	pretty := startMonitor(t, c, "--type=lifecycle", "--pretty", "--all-projects")

	c.ok("project", "create", "watched")
	text := out.waitFor(t, "project-created")

	// Every event is a YAML document; find ours among them.
	dec := yaml.NewDecoder(strings.NewReader(text))
	found := false
	for {
		var ev struct {
			Type     string `yaml:"type"`
			Metadata struct {
				Action    string         `yaml:"action"`
				Source    string         `yaml:"source"`
				Requestor *api.Requestor `yaml:"requestor"`
			} `yaml:"metadata"`
		}
		err := dec.Decode(&ev)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("monitor output is not YAML: %v\n%s", err, text)
		}
		if ev.Type != api.EventTypeLifecycle {
			t.Fatalf("--type lifecycle let through a %q event", ev.Type)
		}
		if ev.Metadata.Action == "project-created" && ev.Metadata.Source == "/1.0/projects/watched" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no project-created event for /1.0/projects/watched in:\n%s", text)
	}
	if !strings.Contains(text, "\n\n") {
		t.Fatalf("events are not separated by a blank line:\n%s", text)
	}

	line := pretty.waitFor(t, "project-created")
	if !strings.Contains(line, " lifecycle project-created /1.0/projects/watched by root/unix\n") {
		t.Fatalf("--pretty line: %q", line)
	}
}

func TestMonitorRejectsUnknownType(t *testing.T) {
	c := newCLI(t)
	c.fails(`"nope" is not a supported event type`, "monitor", "--type", "nope")
}

func TestQuery(t *testing.T) {
	c := newCLI(t)
	var srv api.Server
	if err := json.Unmarshal([]byte(c.ok("query", "/1.0")), &srv); err != nil {
		t.Fatal(err)
	}
	if srv.Auth != "trusted" || srv.APIVersion != "1.0" {
		t.Fatalf("query /1.0: %+v", srv)
	}
	c.fails("not found", "query", "/1.0/nope")
	c.fails("not found", "query", "local:/1.0/nope")

	// A write with no metadata prints nothing; its effect is visible.
	if out := c.ok("query", "-X", "post", "-d", `{"name":"viaquery"}`, "/1.0/projects"); out != "" {
		t.Fatalf("POST printed %q", out)
	}
	var p api.Project
	if err := json.Unmarshal([]byte(c.ok("query", "/1.0/projects/viaquery")), &p); err != nil || p.Name != "viaquery" {
		t.Fatalf("created via query: %+v %v", p, err)
	}
	_, errOut, code := c.run("query", "-X", "PUT", "-d", "{not json", "/1.0")
	if code != 1 || !strings.HasPrefix(errOut, "Error: ") {
		t.Fatalf("bad JSON: exit %d stderr %q", code, errOut)
	}
}
