package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

// target is something with config and devices: an instance or a profile.
// Every change is a read-modify-write guarded by the ETag.
type target interface {
	kind() string
	name() string
	// load reads the object; it returns its writable part.
	load(ctx context.Context) (cfg map[string]string, devs map[string]map[string]string, err error)
	// expanded is the config and devices with profiles applied (the
	// object's own for a profile).
	expanded() (map[string]string, map[string]map[string]string)
	// save writes cfg and devs back (If-Match the loaded ETag).
	save(ctx context.Context, cfg map[string]string, devs map[string]map[string]string) error
	// show is what `show` prints; yaml is what `edit` edits.
	show(expanded bool) any
	edit(ctx context.Context, buf []byte) error
}

type instanceTarget struct {
	c    *client.Client
	n    string
	in   *api.Instance
	etag string
}

func (t *instanceTarget) kind() string { return "instance" }
func (t *instanceTarget) name() string { return t.n }

func (t *instanceTarget) load(ctx context.Context) (map[string]string, map[string]map[string]string, error) {
	in, etag, err := t.c.GetInstance(ctx, t.n)
	if err != nil {
		return nil, nil, err
	}
	t.in, t.etag = in, etag
	return nonNil(in.Config), nonNilDevs(in.Devices), nil
}

func (t *instanceTarget) expanded() (map[string]string, map[string]map[string]string) {
	return t.in.ExpandedConfig, t.in.ExpandedDevices
}

func (t *instanceTarget) save(ctx context.Context, cfg map[string]string, devs map[string]map[string]string) error {
	put := t.in.InstancePut
	put.Config, put.Devices = cfg, devs
	return t.c.UpdateInstance(ctx, t.n, put, t.etag)
}

func (t *instanceTarget) show(expanded bool) any {
	put := t.in.InstancePut
	if expanded {
		put.Config, put.Devices = t.in.ExpandedConfig, t.in.ExpandedDevices
	}
	return struct {
		api.InstancePut
		Name string `json:"name"`
	}{put, t.in.Name}
}

func (t *instanceTarget) edit(ctx context.Context, buf []byte) error {
	var put api.InstancePut
	if err := yaml.Unmarshal(buf, &put); err != nil {
		return err
	}
	return t.c.UpdateInstance(ctx, t.n, put, t.etag)
}

type profileTarget struct {
	c    *client.Client
	n    string
	p    *api.Profile
	etag string
}

func (t *profileTarget) kind() string { return "profile" }
func (t *profileTarget) name() string { return t.n }

func (t *profileTarget) load(ctx context.Context) (map[string]string, map[string]map[string]string, error) {
	p, etag, err := t.c.GetProfile(ctx, t.n)
	if err != nil {
		return nil, nil, err
	}
	t.p, t.etag = p, etag
	return nonNil(p.Config), nonNilDevs(p.Devices), nil
}

func (t *profileTarget) expanded() (map[string]string, map[string]map[string]string) {
	return t.p.Config, t.p.Devices
}

func (t *profileTarget) save(ctx context.Context, cfg map[string]string, devs map[string]map[string]string) error {
	put := t.p.ProfilePut
	put.Config, put.Devices = cfg, devs
	return t.c.UpdateProfile(ctx, t.n, put, t.etag)
}

func (t *profileTarget) show(bool) any { return t.p }

func (t *profileTarget) edit(ctx context.Context, buf []byte) error {
	var put api.ProfilePut
	if err := yaml.Unmarshal(buf, &put); err != nil {
		return err
	}
	return t.c.UpdateProfile(ctx, t.n, put, t.etag)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

func nonNilDevs(m map[string]map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for k, v := range m {
		out[k] = maps.Clone(v)
	}
	return out
}

func (a *app) instanceTarget(arg string) (target, error) {
	c, name, err := a.instanceClient(arg)
	if err != nil {
		return nil, err
	}
	return &instanceTarget{c: c, n: name}, nil
}

func (a *app) profileTarget(arg string) (target, error) {
	remote, name, err := a.parseRemote(arg)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("missing profile name in %q", arg)
	}
	c, err := a.connect(remote)
	if err != nil {
		return nil, err
	}
	return &profileTarget{c: c, n: name}, nil
}

// The operations below are shared by `config` (instances) and `profile`.

func targetSet(ctx context.Context, t target, args []string) error {
	pairs, err := parsePairs(args)
	if err != nil {
		return err
	}
	cfg, devs, err := t.load(ctx)
	if err != nil {
		return err
	}
	maps.Copy(cfg, pairs)
	return t.save(ctx, cfg, devs)
}

func targetUnset(ctx context.Context, t target, keys []string) error {
	cfg, devs, err := t.load(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, ok := cfg[k]; !ok {
			return fmt.Errorf("%s %q has no config key %q", t.kind(), t.name(), k)
		}
		delete(cfg, k)
	}
	return t.save(ctx, cfg, devs)
}

func (a *app) targetGet(ctx context.Context, t target, key string, expanded bool) error {
	cfg, _, err := t.load(ctx)
	if err != nil {
		return err
	}
	if expanded {
		cfg, _ = t.expanded()
	}
	fmt.Fprintln(a.stdout, cfg[key])
	return nil
}

func (a *app) targetShow(ctx context.Context, t target, expanded bool) error {
	if _, _, err := t.load(ctx); err != nil {
		return err
	}
	return a.printYAML(t.show(expanded))
}

func (a *app) targetEdit(ctx context.Context, t target) error {
	if _, _, err := t.load(ctx); err != nil {
		return err
	}
	cur, err := toYAML(t.show(false))
	if err != nil {
		return err
	}
	return a.edit(cur, func(buf []byte) error { return t.edit(ctx, buf) })
}

// deviceCommand is `config device` and `profile device`.
func (a *app) deviceCommand(resolve func(string) (target, error), what string) *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Manage " + what + " devices"}
	withTarget := func(fn func(ctx context.Context, t target, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			t, err := resolve(args[0])
			if err != nil {
				return err
			}
			return fn(cmd.Context(), t, args[1:])
		}
	}
	cmd.AddCommand(
		&cobra.Command{
			Use: "add [remote:]" + strings.ToUpper(what) + " DEVICE TYPE [key=value...]", Short: "Add a device", Args: cobra.MinimumNArgs(3),
			RunE: withTarget(func(ctx context.Context, t target, args []string) error {
				props, err := parseAssignments(args[2:])
				if err != nil {
					return err
				}
				props["type"] = args[1]
				cfg, devs, err := t.load(ctx)
				if err != nil {
					return err
				}
				if _, ok := devs[args[0]]; ok {
					return fmt.Errorf("the device %q already exists", args[0])
				}
				devs[args[0]] = props
				if err := t.save(ctx, cfg, devs); err != nil {
					return err
				}
				a.infof("Device %s added to %s", args[0], t.name())
				return nil
			}),
		},
		&cobra.Command{
			Use: "remove [remote:]" + strings.ToUpper(what) + " DEVICE...", Aliases: []string{"rm"}, Short: "Remove devices", Args: cobra.MinimumNArgs(2),
			RunE: withTarget(func(ctx context.Context, t target, args []string) error {
				cfg, devs, err := t.load(ctx)
				if err != nil {
					return err
				}
				for _, dev := range args {
					if _, err := localDevice(t, devs, dev); err != nil {
						return err
					}
					delete(devs, dev)
				}
				if err := t.save(ctx, cfg, devs); err != nil {
					return err
				}
				a.infof("Device %s removed from %s", strings.Join(args, ", "), t.name())
				return nil
			}),
		},
		&cobra.Command{
			Use: "list [remote:]" + strings.ToUpper(what), Aliases: []string{"ls"}, Short: "List devices", Args: cobra.ExactArgs(1),
			RunE: withTarget(func(ctx context.Context, t target, _ []string) error {
				_, devs, err := t.load(ctx)
				if err != nil {
					return err
				}
				for _, n := range slices.Sorted(maps.Keys(devs)) {
					fmt.Fprintln(a.stdout, n)
				}
				return nil
			}),
		},
		&cobra.Command{
			Use: "show [remote:]" + strings.ToUpper(what), Short: "Show devices as YAML", Args: cobra.ExactArgs(1),
			RunE: withTarget(func(ctx context.Context, t target, _ []string) error {
				_, devs, err := t.load(ctx)
				if err != nil {
					return err
				}
				return a.printYAML(devs)
			}),
		},
		&cobra.Command{
			Use: "get [remote:]" + strings.ToUpper(what) + " DEVICE KEY", Short: "Print a device property", Args: cobra.ExactArgs(3),
			RunE: withTarget(func(ctx context.Context, t target, args []string) error {
				_, devs, err := t.load(ctx)
				if err != nil {
					return err
				}
				dev, ok := devs[args[0]]
				if !ok {
					// Reading a device a profile gives is fine.
					_, exp := t.expanded()
					if dev, ok = exp[args[0]]; !ok {
						return fmt.Errorf("the device %q doesn't exist", args[0])
					}
				}
				fmt.Fprintln(a.stdout, dev[args[1]])
				return nil
			}),
		},
		&cobra.Command{
			Use: "set [remote:]" + strings.ToUpper(what) + " DEVICE KEY VALUE | KEY=VALUE...", Short: "Set device properties", Args: cobra.MinimumNArgs(3),
			RunE: withTarget(func(ctx context.Context, t target, args []string) error {
				pairs, err := parsePairs(args[1:])
				if err != nil {
					return err
				}
				cfg, devs, err := t.load(ctx)
				if err != nil {
					return err
				}
				dev, err := localDevice(t, devs, args[0])
				if err != nil {
					return err
				}
				maps.Copy(dev, pairs)
				return t.save(ctx, cfg, devs)
			}),
		},
	)
	return cmd
}

// localDevice is the target's own device name, for changing it; a device
// that comes from a profile cannot be changed for one instance.
func localDevice(t target, devs map[string]map[string]string, name string) (map[string]string, error) {
	if dev, ok := devs[name]; ok {
		return dev, nil
	}
	if _, exp := t.expanded(); exp[name] != nil {
		return nil, fmt.Errorf("device %q comes from a profile: override it or change the profile instead", name)
	}
	return nil, fmt.Errorf("the device %q doesn't exist", name)
}
