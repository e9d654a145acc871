package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

func (a *app) monitorCommand() *cobra.Command {
	var types []string
	var pretty, allProjects bool
	cmd := &cobra.Command{
		Use: "monitor [remote:]", Short: "Print the server's events as they happen", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connectArg(args)
			if err != nil {
				return err
			}
			l, err := c.GetEvents(cmd.Context(), client.EventOptions{Types: types, AllProjects: allProjects})
			if err != nil {
				return err
			}
			defer l.Close()
			if a.onListen != nil {
				a.onListen()
			}
			for ev := range l.Events() {
				if err := a.printEvent(ev, pretty); err != nil {
					return err
				}
			}
			return l.Err()
		},
	}
	cmd.Flags().StringSliceVar(&types, "type", nil, "event types to show: lifecycle, logging, operation, security (repeatable)")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "print one line per event")
	cmd.Flags().BoolVar(&allProjects, "all-projects", false, "show the events of every project")
	return cmd
}

// printEvent prints an event as a YAML document followed by a blank line
// (lxc's layout), or as one line with --pretty.
func (a *app) printEvent(ev api.Event, pretty bool) error {
	if !pretty {
		buf, err := toYAML(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", buf)
		return err
	}
	_, err := fmt.Fprintf(a.stdout, "%s %s %s\n", ev.Timestamp.Local().Format(time.RFC3339Nano), ev.Type, summary(ev))
	return err
}

// summary is the one-line gist of an event's metadata; unknown shapes
// fall back to their JSON.
func summary(ev api.Event) string {
	var parts []string
	switch ev.Type {
	case api.EventTypeLifecycle:
		var m api.EventLifecycle
		if json.Unmarshal(ev.Metadata, &m) == nil {
			parts = append(parts, m.Action, m.Source)
			if m.Requestor != nil {
				parts = append(parts, "by "+m.Requestor.Username+"/"+m.Requestor.Protocol)
			}
		}
	case api.EventTypeLogging:
		var m api.EventLogging
		if json.Unmarshal(ev.Metadata, &m) == nil {
			parts = append(parts, m.Level, m.Message)
			for _, k := range slices.Sorted(maps.Keys(m.Context)) {
				parts = append(parts, k+"="+m.Context[k])
			}
		}
	case api.EventTypeOperation:
		var m api.Operation
		if json.Unmarshal(ev.Metadata, &m) == nil {
			parts = append(parts, m.ID, m.Status, m.Description)
		}
	case api.EventTypeSecurity:
		var m api.EventSecurity
		if json.Unmarshal(ev.Metadata, &m) == nil {
			parts = append(parts, m.Level, m.Name, m.Description)
		}
	}
	if parts == nil {
		return string(ev.Metadata)
	}
	if ev.Project != "" {
		parts = append(parts, "project="+ev.Project)
	}
	return strings.Join(parts, " ")
}
