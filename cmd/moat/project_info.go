package main

import (
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
)

// projectInfoCommand shows a project's resource usage against its limits,
// like lxc project info.
func (a *app) projectInfoCommand() *cobra.Command {
	return &cobra.Command{
		Use: "info [remote:]NAME", Short: "Show a project's resource usage and limits", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.projectArg(args[0])
			if err != nil {
				return err
			}
			st, err := c.GetProjectState(cmd.Context(), name)
			if err != nil {
				return err
			}
			return writeTable(a.stdout, []string{"RESOURCE", "LIMIT", "USAGE"}, projectInfoRows(st))
		},
	}
}

func projectInfoRows(st *api.ProjectState) [][]string {
	keys := make([]string, 0, len(st.Resources))
	for k := range st.Resources {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		r := st.Resources[k]
		limit := "UNLIMITED"
		if r.Limit >= 0 {
			limit = strconv.FormatInt(r.Limit, 10)
		}
		rows = append(rows, []string{strings.ToUpper(k), limit, strconv.FormatInt(r.Usage, 10)})
	}
	return rows
}
