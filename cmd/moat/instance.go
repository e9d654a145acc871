package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

// instanceRef is "[remote:]name" resolved and connected.
func (a *app) instanceClient(arg string) (*client.Client, string, error) {
	remote, name, err := a.parseRemote(arg)
	if err != nil {
		return nil, "", err
	}
	if name == "" {
		return nil, "", fmt.Errorf("missing instance name in %q", arg)
	}
	c, err := a.connect(remote)
	if err != nil {
		return nil, "", err
	}
	return c, name, nil
}

func (a *app) launchCommand() *cobra.Command { return a.createCommand("launch", true) }

func (a *app) initCommand() *cobra.Command { return a.createCommand("init", false) }

func (a *app) createCommand(use string, start bool) *cobra.Command {
	var config, profiles []string
	var ephemeral, noProfiles bool
	var description string
	short := "Create an instance from an image"
	if start {
		short = "Create and start an instance from an image"
	}
	cmd := &cobra.Command{
		Use: use + " [remote:]IMAGE [[remote:]NAME]", Short: short, Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			imgRemote, img, err := a.parseRemote(args[0])
			if err != nil {
				return err
			}
			remote, name := imgRemote, ""
			if len(args) == 2 {
				if remote, name, err = a.parseRemote(args[1]); err != nil {
					return err
				}
				if remote != imgRemote {
					return fmt.Errorf("the image must be on the remote the instance is created on (%q): import it there first", remote)
				}
			}
			cfg, err := parseAssignments(config)
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			req := api.InstancesPost{Name: name, Type: "container", Start: start,
				InstancePut: api.InstancePut{Config: cfg, Ephemeral: ephemeral, Description: description}}
			switch {
			case noProfiles:
				req.Profiles = []string{}
			case len(profiles) > 0:
				req.Profiles = profiles
			}
			req.Source, err = imageSource(cmd.Context(), c, img)
			if err != nil {
				return err
			}
			if name == "" {
				a.infof("Creating the instance")
			} else {
				a.infof("Creating %s", name)
			}
			got, err := c.CreateInstance(cmd.Context(), req)
			if err != nil {
				return err
			}
			if name == "" {
				a.infof("Instance name is: %s", got)
			}
			if start {
				a.infof("Starting %s", got)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&config, "config", "c", nil, "config `key=value` to apply to the new instance")
	f.StringArrayVarP(&profiles, "profile", "p", nil, "`profile` to apply (repeatable; default: default)")
	f.BoolVar(&noProfiles, "no-profiles", false, "create the instance with no profiles")
	f.BoolVarP(&ephemeral, "ephemeral", "e", false, "ephemeral instance (deleted when it stops)")
	f.StringVar(&description, "description", "", "instance description")
	return cmd
}

// imageSource names img by alias when one exists, else as a fingerprint
// (or a prefix of one).
func imageSource(ctx context.Context, c *client.Client, img string) (api.InstanceSource, error) {
	if img == "" {
		return api.InstanceSource{}, errors.New("missing image name")
	}
	_, err := c.GetImageAlias(ctx, img)
	switch {
	case err == nil:
		return api.InstanceSource{Type: "image", Alias: img}, nil
	case !client.IsNotFound(err):
		return api.InstanceSource{}, err
	}
	im, _, err := c.GetImage(ctx, img)
	if err != nil {
		if client.IsNotFound(err) {
			return api.InstanceSource{}, fmt.Errorf("image %q not found (neither an alias nor a fingerprint)", img)
		}
		return api.InstanceSource{}, err
	}
	return api.InstanceSource{Type: "image", Fingerprint: im.Fingerprint}, nil
}

// stateCommand is start, stop, restart, pause and resume.
func (a *app) stateCommand(use, action, short string, aliases ...string) *cobra.Command {
	var force bool
	var timeout int
	cmd := &cobra.Command{
		Use: use + " [remote:]NAME...", Aliases: aliases, Short: short, Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, arg := range args {
				c, name, err := a.instanceClient(arg)
				if err == nil {
					err = c.UpdateInstanceState(cmd.Context(), name, api.InstanceStatePut{Action: action, Force: force, Timeout: timeout})
				}
				if err != nil {
					if len(args) > 1 {
						err = fmt.Errorf("%s: %w", arg, err)
					}
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	if action == "stop" || action == "restart" {
		cmd.Flags().BoolVarP(&force, "force", "f", false, "force the instance to stop (kill it)")
		cmd.Flags().IntVar(&timeout, "timeout", -1, "seconds to wait for a clean shutdown (-1: no limit)")
	}
	return cmd
}

func (a *app) deleteCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: "delete [remote:]NAME...", Aliases: []string{"rm"}, Short: "Delete instances", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, arg := range args {
				c, name, err := a.instanceClient(arg)
				if err == nil {
					err = c.DeleteInstance(cmd.Context(), name, force)
				}
				if err != nil {
					if len(args) > 1 {
						err = fmt.Errorf("%s: %w", arg, err)
					}
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop running instances first")
	return cmd
}

func (a *app) renameCommand() *cobra.Command {
	return &cobra.Command{
		Use: "rename [remote:]OLD [remote:]NEW", Aliases: []string{"move", "mv"}, Short: "Rename a stopped instance", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, from, err := a.instanceClient(args[0])
			if err != nil {
				return err
			}
			remote, _, _ := a.parseRemote(args[0])
			toRemote, to, err := a.parseRemote(args[1])
			if err != nil {
				return err
			}
			if toRemote != remote {
				return errors.New("moving instances between remotes is not supported")
			}
			return c.RenameInstance(cmd.Context(), from, to)
		},
	}
}
