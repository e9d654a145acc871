package main

import (
	"github.com/spf13/cobra"
)

func (a *app) infoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info [remote:]",
		Short: "Show the server's information (GET /1.0)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, _, err := a.remoteArg(args)
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
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
