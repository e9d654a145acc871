package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// extendConfigCommand makes `config set|unset|get|show|edit` target an
// instance when their first argument names one, as lxc 5.0.2 decides:
//
//	config set [remote:]NAME KEY VALUE | NAME KEY=VALUE...   an instance
//	config set KEY VALUE | KEY=VALUE... | remote: ...        the server
//	config get|unset [remote:]NAME KEY                       an instance
//	config get|unset KEY                                     the server
//	config show|edit [remote:]NAME                           an instance
//
// and adds `config device`.
func (a *app) extendConfigCommand(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		server := sub.RunE
		var isInstance func(args []string) bool
		var expanded *bool
		switch sub.Name() {
		case "set":
			isInstance = func(args []string) bool {
				if len(args) == 0 || strings.HasSuffix(args[0], ":") || strings.Contains(args[0], "=") {
					return false
				}
				return !(len(args) == 2 && !strings.Contains(args[1], "="))
			}
		case "get", "unset":
			isInstance = func(args []string) bool { return len(args) == 2 && !strings.HasSuffix(args[0], ":") }
		case "show", "edit":
			isInstance = func(args []string) bool { return len(args) == 1 && !strings.HasSuffix(args[0], ":") }
		default:
			continue
		}
		if n := sub.Name(); n == "get" || n == "show" {
			expanded = new(bool)
			sub.Flags().BoolVarP(expanded, "expanded", "e", false, "with the config and devices of the instance's profiles")
		}
		name := sub.Name()
		sub.Use = strings.Replace(sub.Use, "[remote:]", "[remote:][NAME]", 1)
		sub.RunE = func(cmd *cobra.Command, args []string) error {
			if !isInstance(args) {
				return server(cmd, args)
			}
			t, err := a.instanceTarget(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			switch name {
			case "set":
				return targetSet(ctx, t, args[1:])
			case "unset":
				return targetUnset(ctx, t, args[1:])
			case "get":
				return a.targetGet(ctx, t, args[1], *expanded)
			case "show":
				return a.targetShow(ctx, t, *expanded)
			}
			return a.targetEdit(ctx, t)
		}
	}
	cmd.Short = "Manage instance and server configuration"
	cmd.AddCommand(a.deviceCommand(a.instanceTarget, "instance"))
}
