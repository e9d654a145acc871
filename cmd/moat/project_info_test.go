package main

import (
	"strings"
	"testing"
)

func TestProjectInfo(t *testing.T) {
	c := newCLI(t)
	c.ok("project", "create", "lim", "-c", "limits.memory=1GiB", "-c", "limits.instances=3")
	rows := map[string][]string{}
	for _, line := range strings.Split(c.ok("project", "info", "lim"), "\n") {
		var cells []string
		for _, cell := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(cell))
		}
		if len(cells) == 3 {
			rows[cells[0]] = cells[1:]
		}
	}
	for res, want := range map[string][2]string{"MEMORY": {"1073741824", "0"}, "INSTANCES": {"3", "0"}, "CPU": {"UNLIMITED", "0"}} {
		if got := rows[res]; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("project info %s = %v, want %v", res, got, want)
		}
	}
	c.fails(`Project "nope" not found`, "project", "info", "nope")
}

// TestEmptyNameRefused: "remote:" with no name is refused before anything
// is sent, for every command that names one object.
func TestEmptyNameRefused(t *testing.T) {
	c := newCLI(t)
	c.fails("missing profile name", "profile", "delete", "local:")
	c.fails("missing storage pool name", "storage", "show", "local:")
	c.fails("missing alias name", "image", "alias", "delete", "local:")
	c.fails("missing project name", "project", "show", "local:")
}
