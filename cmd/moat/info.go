package main

import (
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) infoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info [remote:][NAME]",
		Short: "Show an instance's state, or the server's information (GET /1.0) when no instance is named",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && !strings.HasSuffix(args[0], ":") {
				c, name, err := a.instanceClient(args[0])
				if err != nil {
					return err
				}
				in, _, err := c.GetInstanceFull(cmd.Context(), name)
				if err != nil {
					return err
				}
				return a.printInstanceInfo(c, in)
			}
			c, err := a.connectArg(args)
			if err != nil {
				return err
			}
			srv, _, err := c.GetServer(cmd.Context())
			if err != nil {
				return err
			}
			return a.printYAML(srv)
		},
	}
}
