package main

import (
	"fmt"
	"maps"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

// configCommand manages the server config. Every change is a
// read-modify-write guarded by the ETag, so two admins editing at once
// cannot silently overwrite each other.
func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Manage the server configuration"}
	cmd.AddCommand(
		a.trustCommand(),
		&cobra.Command{
			Use: "show [remote:]", Short: "Show the server configuration", Args: cobra.MaximumNArgs(1),
			RunE: a.withServer(func(cmd *cobra.Command, c *client.Client, srv *api.Server, _ string, _ []string) error {
				return a.printYAML(api.ServerPut{Config: srv.Config})
			}),
		},
		&cobra.Command{
			Use: "get [remote:] KEY", Short: "Print a server configuration value", Args: cobra.RangeArgs(1, 2),
			RunE: a.withServer(func(cmd *cobra.Command, c *client.Client, srv *api.Server, _ string, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("expected one key")
				}
				fmt.Fprintln(a.stdout, srv.Config[args[0]])
				return nil
			}),
		},
		&cobra.Command{
			Use: "set [remote:] KEY VALUE | KEY=VALUE...", Short: "Set server configuration keys", Args: cobra.MinimumNArgs(1),
			RunE: a.withServer(func(cmd *cobra.Command, c *client.Client, srv *api.Server, etag string, args []string) error {
				pairs, err := parsePairs(args)
				if err != nil {
					return err
				}
				cfg := maps.Clone(srv.Config)
				if cfg == nil {
					cfg = map[string]string{}
				}
				maps.Copy(cfg, pairs)
				return c.UpdateServer(cmd.Context(), api.ServerPut{Config: cfg}, etag)
			}),
		},
		&cobra.Command{
			Use: "unset [remote:] KEY", Short: "Unset a server configuration key", Args: cobra.RangeArgs(1, 2),
			RunE: a.withServer(func(cmd *cobra.Command, c *client.Client, srv *api.Server, etag string, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("expected one key")
				}
				cfg := maps.Clone(srv.Config)
				delete(cfg, args[0])
				return c.UpdateServer(cmd.Context(), api.ServerPut{Config: cfg}, etag)
			}),
		},
		&cobra.Command{
			Use: "edit [remote:]", Short: "Edit the server configuration as YAML", Args: cobra.MaximumNArgs(1),
			RunE: a.withServer(func(cmd *cobra.Command, c *client.Client, srv *api.Server, etag string, _ []string) error {
				cur, err := toYAML(api.ServerPut{Config: srv.Config})
				if err != nil {
					return err
				}
				return a.edit(cur, func(buf []byte) error {
					var put api.ServerPut
					if err := yaml.Unmarshal(buf, &put); err != nil {
						return err
					}
					return c.UpdateServer(cmd.Context(), put, etag)
				})
			}),
		},
	)
	return cmd
}

// withServer resolves the optional remote argument, connects and reads
// GET /1.0 with its ETag before running fn on the remaining arguments.
func (a *app) withServer(fn func(cmd *cobra.Command, c *client.Client, srv *api.Server, etag string, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		remote, args, err := a.remoteArg(args)
		if err != nil {
			return err
		}
		c, err := a.connect(remote)
		if err != nil {
			return err
		}
		srv, etag, err := c.GetServer(cmd.Context())
		if err != nil {
			return err
		}
		return fn(cmd, c, srv, etag, args)
	}
}
