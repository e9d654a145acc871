package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

func (a *app) storageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "storage", Short: "Show storage pools"}
	list := listCommand(a, "List storage pools", []string{"NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE"},
		func(ctx context.Context, c *client.Client) ([]api.StoragePool, error) { return c.GetStoragePools(ctx) },
		func(p api.StoragePool) string { return p.Name },
		func(p api.StoragePool) []string {
			return []string{p.Name, p.Driver, p.Config["source"], p.Description, fmt.Sprint(len(p.UsedBy)), strings.ToUpper(p.Status)}
		})
	cmd.AddCommand(list, &cobra.Command{
		Use: "show [remote:]POOL", Short: "Show a storage pool", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.connectNamed(args[0], "storage pool")
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
