package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
)

func (a *app) operationCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "operation", Short: "List, show and cancel background operations"}
	cmd.AddCommand(a.operationListCommand(), a.operationShowCommand(), a.operationDeleteCommand())
	return cmd
}

func (a *app) operationListCommand() *cobra.Command {
	var format string
	var allProjects bool
	cmd := &cobra.Command{
		Use: "list [remote:]", Aliases: []string{"ls"}, Short: "List operations", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connectArg(args)
			if err != nil {
				return err
			}
			ops, err := c.GetOperations(cmd.Context(), allProjects)
			if err != nil {
				return err
			}
			if ops == nil {
				ops = []api.Operation{} // json shows [], not null
			}
			l := list{header: []string{"ID", "TYPE", "DESCRIPTION", "STATUS", "CANCELABLE", "CREATED"}, data: ops}
			for _, op := range ops {
				l.rows = append(l.rows, []string{op.ID, op.Class, op.Description, op.Status,
					yesNo(op.MayCancel), op.CreatedAt.Local().Format(time.DateTime)})
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	cmd.Flags().BoolVar(&allProjects, "all-projects", false, "list the operations of every project")
	return cmd
}

func (a *app) operationShowCommand() *cobra.Command {
	return &cobra.Command{
		Use: "show [remote:]ID", Short: "Show an operation", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, id, err := a.parseRemote(args[0])
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			op, err := c.GetOperation(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.printYAML(op)
		},
	}
}

func (a *app) operationDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use: "delete [remote:]ID", Aliases: []string{"rm", "cancel"}, Short: "Cancel an operation", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, id, err := a.parseRemote(args[0])
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			if err := c.DeleteOperation(cmd.Context(), id); err != nil {
				return err
			}
			a.infof("Operation %s deleted", id)
			return nil
		},
	}
}
