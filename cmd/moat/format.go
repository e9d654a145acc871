package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/client"
)

// Output formats of list commands.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
	formatCSV   = "csv"
)

func addFormatFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVarP(format, "format", "f", formatTable, "output format: table, json, yaml or csv")
}

// list is what a list command shows: rows for table and csv, the API
// objects themselves for json and yaml (as lxc does).
type list struct {
	header []string
	rows   [][]string
	data   any
}

func (a *app) printList(format string, l list) error {
	switch format {
	case formatTable:
		return writeTable(a.stdout, l.header, l.rows)
	case formatCSV:
		w := csv.NewWriter(a.stdout)
		if err := w.WriteAll(l.rows); err != nil {
			return err
		}
		return w.Error()
	case formatJSON:
		buf, err := json.Marshal(l.data)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", buf)
		return err
	case formatYAML:
		return a.printYAML(l.data)
	}
	return fmt.Errorf("invalid format %q: use table, json, yaml or csv", format)
}

// writeTable draws lxc's bordered table, with a rule between rows.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	// A cell may hold several lines (lxc lists one address per line).
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, cell := range r {
			for _, l := range strings.Split(cell, "\n") {
				width[i] = max(width[i], utf8.RuneCountInString(l))
			}
		}
	}
	var b strings.Builder
	rule := func() {
		b.WriteString("+")
		for _, n := range width {
			b.WriteString(strings.Repeat("-", n+2) + "+")
		}
		b.WriteString("\n")
	}
	line := func(r []string) {
		cells := make([][]string, len(r))
		height := 1
		for i, cell := range r {
			cells[i] = strings.Split(cell, "\n")
			height = max(height, len(cells[i]))
		}
		for h := 0; h < height; h++ {
			b.WriteString("|")
			for i, n := range width {
				var part string
				if h < len(cells[i]) {
					part = cells[i][h]
				}
				b.WriteString(" " + part + strings.Repeat(" ", n-utf8.RuneCountInString(part)) + " |")
			}
			b.WriteString("\n")
		}
	}
	rule()
	line(header)
	rule()
	for _, r := range rows {
		line(r)
		rule()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (a *app) printYAML(v any) error {
	buf, err := toYAML(v)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(buf)
	return err
}

// toYAML renders v as YAML with its JSON field names and order. The api
// types are JSON-first (some have no yaml tags, and raw JSON metadata has
// no YAML form), so v goes through JSON: YAML parses JSON, and resetting
// the node styles turns the flow-style result into block style.
func toYAML(v any) ([]byte, error) {
	buf, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(buf, &doc); err != nil {
		return nil, err
	}
	resetStyle(&doc)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// resetStyle clears JSON's quoting and flow style; the encoder re-quotes
// the strings that need it (e.g. "true" stays a string).
func resetStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		resetStyle(c)
	}
}

// yesNo is lxc's rendering of a boolean column.
func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}

// listCommand builds a "list [remote:]" command: it fetches the objects from
// the remote, sorts them by key and prints one row for each.
func listCommand[T any](a *app, short string, header []string,
	fetch func(context.Context, *client.Client) ([]T, error), key func(T) string, row func(T) []string) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "list [remote:]", Aliases: []string{"ls"}, Short: short, Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connectArg(args)
			if err != nil {
				return err
			}
			objs, err := fetch(cmd.Context(), c)
			if err != nil {
				return err
			}
			if objs == nil {
				objs = []T{}
			}
			slices.SortFunc(objs, func(x, y T) int { return strings.Compare(key(x), key(y)) })
			l := list{header: header, data: objs}
			for _, o := range objs {
				l.rows = append(l.rows, row(o))
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}
