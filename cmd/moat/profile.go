package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

func (a *app) profileCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Short: "Manage profiles"}
	withProfile := func(fn func(ctx context.Context, t target, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			t, err := a.profileTarget(args[0])
			if err != nil {
				return err
			}
			return fn(cmd.Context(), t, args[1:])
		}
	}
	list := listCommand(a, "List profiles", []string{"NAME", "DESCRIPTION", "USED BY"},
		func(ctx context.Context, c *client.Client) ([]api.Profile, error) { return c.GetProfiles(ctx) },
		func(p api.Profile) string { return p.Name },
		func(p api.Profile) []string { return []string{p.Name, p.Description, fmt.Sprint(len(p.UsedBy))} })
	var description string
	create := &cobra.Command{
		Use: "create [remote:]PROFILE", Short: "Create a profile", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.connectNamed(args[0], "profile")
			if err != nil {
				return err
			}
			if err := c.CreateProfile(cmd.Context(), api.ProfilesPost{Name: name, ProfilePut: api.ProfilePut{Description: description}}); err != nil {
				return err
			}
			a.infof("Profile %s created", name)
			return nil
		},
	}
	create.Flags().StringVar(&description, "description", "", "profile description")
	cmd.AddCommand(list, create,
		&cobra.Command{
			Use: "show [remote:]PROFILE", Short: "Show a profile", Args: cobra.ExactArgs(1),
			RunE: withProfile(func(ctx context.Context, t target, _ []string) error { return a.targetShow(ctx, t, false) }),
		},
		&cobra.Command{
			Use: "delete [remote:]PROFILE", Aliases: []string{"rm"}, Short: "Delete an unused profile", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, _, name, err := a.connectNamed(args[0], "profile")
				if err != nil {
					return err
				}
				if err := c.DeleteProfile(cmd.Context(), name); err != nil {
					return err
				}
				a.infof("Profile %s deleted", name)
				return nil
			},
		},
		&cobra.Command{
			Use: "set [remote:]PROFILE KEY VALUE | KEY=VALUE...", Short: "Set profile config keys", Args: cobra.MinimumNArgs(2),
			RunE: withProfile(func(ctx context.Context, t target, args []string) error { return targetSet(ctx, t, args) }),
		},
		&cobra.Command{
			Use: "unset [remote:]PROFILE KEY", Short: "Unset a profile config key", Args: cobra.ExactArgs(2),
			RunE: withProfile(func(ctx context.Context, t target, args []string) error { return targetUnset(ctx, t, args) }),
		},
		&cobra.Command{
			Use: "get [remote:]PROFILE KEY", Short: "Print a profile config value", Args: cobra.ExactArgs(2),
			RunE: withProfile(func(ctx context.Context, t target, args []string) error { return a.targetGet(ctx, t, args[0], false) }),
		},
		&cobra.Command{
			Use: "edit [remote:]PROFILE", Short: "Edit a profile as YAML", Args: cobra.ExactArgs(1),
			RunE: withProfile(func(ctx context.Context, t target, _ []string) error { return a.targetEdit(ctx, t) }),
		},
		&cobra.Command{
			Use: "rename [remote:]PROFILE NEW", Aliases: []string{"mv"}, Short: "Rename a profile", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, _, name, err := a.connectNamed(args[0], "profile")
				if err != nil {
					return err
				}
				if err := c.RenameProfile(cmd.Context(), name, args[1]); err != nil {
					return err
				}
				a.infof("Profile %s renamed to %s", name, args[1])
				return nil
			},
		},
		&cobra.Command{
			Use: "add [remote:]INSTANCE PROFILE", Short: "Add a profile to an instance", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.changeProfiles(cmd.Context(), args[0], func(ps []string) ([]string, error) {
					if slices.Contains(ps, args[1]) {
						return nil, fmt.Errorf("profile %s is already applied to %s", args[1], args[0])
					}
					return append(ps, args[1]), nil
				}, fmt.Sprintf("Profile %s added to %s", args[1], args[0]))
			},
		},
		&cobra.Command{
			Use: "remove [remote:]INSTANCE PROFILE", Short: "Remove a profile from an instance", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.changeProfiles(cmd.Context(), args[0], func(ps []string) ([]string, error) {
					i := slices.Index(ps, args[1])
					if i < 0 {
						return nil, fmt.Errorf("profile %s isn't currently applied to %s", args[1], args[0])
					}
					return slices.Delete(ps, i, i+1), nil
				}, fmt.Sprintf("Profile %s removed from %s", args[1], args[0]))
			},
		},
		a.deviceCommand(a.profileTarget, "profile"),
	)
	return cmd
}

// changeProfiles rewrites an instance's profile list.
func (a *app) changeProfiles(ctx context.Context, arg string, change func([]string) ([]string, error), done string) error {
	c, name, err := a.instanceClient(arg)
	if err != nil {
		return err
	}
	in, etag, err := c.GetInstance(ctx, name)
	if err != nil {
		return err
	}
	ps, err := change(slices.Clone(in.Profiles))
	if err != nil {
		return err
	}
	put := in.InstancePut
	put.Profiles = ps
	if put.Profiles == nil {
		put.Profiles = []string{}
	}
	if err := c.UpdateInstance(ctx, name, put, etag); err != nil {
		return err
	}
	a.infof("%s", done)
	return nil
}
