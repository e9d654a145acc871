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
