package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
)

func (a *app) storageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "storage", Short: "Show storage pools"}
	var format string
	list := &cobra.Command{
		Use: "list [remote:]", Aliases: []string{"ls"}, Short: "List storage pools", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connectArg(args)
			if err != nil {
				return err
			}
			pools, err := c.GetStoragePools(cmd.Context())
			if err != nil {
				return err
			}
			if pools == nil {
				pools = []api.StoragePool{}
			}
			slices.SortFunc(pools, func(x, y api.StoragePool) int { return strings.Compare(x.Name, y.Name) })
			l := list{header: []string{"NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE"}, data: pools}
			for _, p := range pools {
				l.rows = append(l.rows, []string{p.Name, p.Driver, p.Config["source"], p.Description, fmt.Sprint(len(p.UsedBy)), strings.ToUpper(p.Status)})
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(list, &format)
	cmd.AddCommand(list, &cobra.Command{
		Use: "show [remote:]POOL", Short: "Show a storage pool", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, name, err := a.parseRemote(args[0])
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			p, err := c.GetStoragePool(cmd.Context(), name)
			if err != nil {
				return err
			}
			return a.printYAML(p)
		},
	})
	return cmd
}
