package main

import (
	"fmt"
	"maps"
	"strconv"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

func (a *app) projectCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "project", Short: "Manage projects"}
	cmd.AddCommand(a.projectCreateCommand(), a.projectListCommand(), a.projectShowCommand(),
		a.projectGetCommand(), a.projectSetCommand(), a.projectUnsetCommand(), a.projectEditCommand(),
		a.projectRenameCommand(), a.projectDeleteCommand(), a.projectSwitchCommand(), a.projectInfoCommand())
	return cmd
}

// projectArg connects to the remote named in "[remote:]project".
func (a *app) projectArg(arg string) (c *client.Client, remote, name string, err error) {
	return a.connectNamed(arg, "project")
}

func (a *app) projectCreateCommand() *cobra.Command {
	var config []string
	var description string
	cmd := &cobra.Command{
		Use: "create [remote:]NAME", Short: "Create a project", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.projectArg(args[0])
			if err != nil {
				return err
			}
			cfg, err := parseAssignments(config)
			if err != nil {
				return err
			}
			p := api.ProjectsPost{Name: name, ProjectPut: api.ProjectPut{Description: description, Config: cfg}}
			if err := c.CreateProject(cmd.Context(), p); err != nil {
				return err
			}
			a.infof("Project %s created", name)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&config, "config", "c", nil, "config key=value to apply to the new project (repeatable)")
	cmd.Flags().StringVar(&description, "description", "", "project description")
	return cmd
}

func (a *app) projectListCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "list [remote:]", Aliases: []string{"ls"}, Short: "List projects", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connectArg(args)
			if err != nil {
				return err
			}
			projects, err := c.GetProjects(cmd.Context())
			if err != nil {
				return err
			}
			l := list{
				header: []string{"NAME", "IMAGES", "PROFILES", "STORAGE VOLUMES", "STORAGE BUCKETS", "NETWORKS", "DESCRIPTION", "USED BY"},
				data:   projects,
			}
			for _, p := range projects {
				name := p.Name
				if name == c.Project() {
					name += " (current)"
				}
				feature := func(k string) string { return yesNo(p.Config["features."+k] == "true") }
				l.rows = append(l.rows, []string{name, feature("images"), feature("profiles"), feature("storage.volumes"),
					feature("storage.buckets"), feature("networks"), p.Description, strconv.Itoa(len(p.UsedBy))})
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func (a *app) projectShowCommand() *cobra.Command {
	return &cobra.Command{
		Use: "show [remote:]NAME", Short: "Show a project", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.projectArg(args[0])
			if err != nil {
				return err
			}
			p, _, err := c.GetProject(cmd.Context(), name)
			if err != nil {
				return err
			}
			return a.printYAML(p)
		},
	}
}

func (a *app) projectGetCommand() *cobra.Command {
	return &cobra.Command{
		Use: "get [remote:]NAME KEY", Short: "Print a project configuration value", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.projectArg(args[0])
			if err != nil {
				return err
			}
			p, _, err := c.GetProject(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, p.Config[args[1]])
			return nil
		},
	}
}

// updateProjectConfig is the ETag-guarded read-modify-write of set and
// unset.
func (a *app) updateProjectConfig(cmd *cobra.Command, arg string, change func(map[string]string)) error {
	c, _, name, err := a.projectArg(arg)
	if err != nil {
		return err
	}
	p, etag, err := c.GetProject(cmd.Context(), name)
	if err != nil {
		return err
	}
	cfg := maps.Clone(p.Config)
	if cfg == nil {
		cfg = map[string]string{}
	}
	change(cfg)
	return c.UpdateProject(cmd.Context(), name, api.ProjectPut{Description: p.Description, Config: cfg}, etag)
}

func (a *app) projectSetCommand() *cobra.Command {
	return &cobra.Command{
		Use: "set [remote:]NAME KEY VALUE | KEY=VALUE...", Short: "Set project configuration keys", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pairs, err := parsePairs(args[1:])
			if err != nil {
				return err
			}
			return a.updateProjectConfig(cmd, args[0], func(cfg map[string]string) { maps.Copy(cfg, pairs) })
		},
	}
}

func (a *app) projectUnsetCommand() *cobra.Command {
	return &cobra.Command{
		Use: "unset [remote:]NAME KEY", Short: "Unset a project configuration key", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.updateProjectConfig(cmd, args[0], func(cfg map[string]string) { delete(cfg, args[1]) })
		},
	}
}

func (a *app) projectEditCommand() *cobra.Command {
	return &cobra.Command{
		Use: "edit [remote:]NAME", Short: "Edit a project as YAML", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.projectArg(args[0])
			if err != nil {
				return err
			}
			p, etag, err := c.GetProject(cmd.Context(), name)
			if err != nil {
				return err
			}
			cur, err := toYAML(p)
			if err != nil {
				return err
			}
			// Only description and config are writable; name and
			// used_by in the text are ignored.
			return a.edit(cur, func(buf []byte) error {
				var put api.ProjectPut
				if err := yaml.Unmarshal(buf, &put); err != nil {
					return err
				}
				return c.UpdateProject(cmd.Context(), name, put, etag)
			})
		},
	}
}

func (a *app) projectRenameCommand() *cobra.Command {
	return &cobra.Command{
		Use: "rename [remote:]NAME NEW", Short: "Rename an empty project", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, remote, name, err := a.projectArg(args[0])
			if err != nil {
				return err
			}
			if err := c.RenameProject(cmd.Context(), name, args[1]); err != nil {
				return err
			}
			// The current project follows its rename.
			if err := a.replaceCurrent(remote, name, args[1]); err != nil {
				return err
			}
			a.infof("Project %s renamed to %s", name, args[1])
			return nil
		},
	}
}

func (a *app) projectDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use: "delete [remote:]NAME...", Aliases: []string{"rm"}, Short: "Delete empty projects", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				c, remote, name, err := a.projectArg(arg)
				if err != nil {
					return err
				}
				if err := c.DeleteProject(cmd.Context(), name); err != nil {
					return err
				}
				// A deleted current project falls back to default.
				if err := a.replaceCurrent(remote, name, ""); err != nil {
					return err
				}
				a.infof("Project %s deleted", name)
			}
			return nil
		},
	}
}

func (a *app) projectSwitchCommand() *cobra.Command {
	return &cobra.Command{
		Use: "switch [remote:]NAME", Short: "Make a project the current one", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, remote, name, err := a.projectArg(args[0])
			if err != nil {
				return err
			}
			// Refuse to store a project that does not exist.
			if _, _, err := c.GetProject(cmd.Context(), name); err != nil {
				return err
			}
			conf, err := a.config()
			if err != nil {
				return err
			}
			conf.setProject(remote, name)
			return conf.save()
		},
	}
}

// replaceCurrent changes the stored current project of remote from old to
// to ("" = default) if it was old.
func (a *app) replaceCurrent(remote, old, to string) error {
	conf, err := a.config()
	if err != nil {
		return err
	}
	if conf.Remotes[remote].Project != old {
		return nil
	}
	conf.setProject(remote, to)
	return conf.save()
}
