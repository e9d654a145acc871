package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/client"
)

// localRemote is the daemon on this machine's admin socket; the other
// remotes are HTTPS servers added with `moat remote add` (remote.go).
const localRemote = "local"

// clientConfig is the CLI's own state, $MOAT_CONF/config.yml (default
// ~/.config/moat/config.yml). Its layout follows lxc's config.yml so
// remotes slot in later: per-remote settings, a default remote.
type clientConfig struct {
	DefaultRemote string                  `yaml:"default-remote,omitempty"`
	Remotes       map[string]remoteConfig `yaml:"remotes,omitempty"`

	path string
}

type remoteConfig struct {
	// Addr is the https:// URL of a remote added with `moat remote add`
	// (empty for local, the admin socket).
	Addr string `yaml:"addr,omitempty"`
	// Project is the current project (`moat project switch`).
	Project string `yaml:"project,omitempty"`
}

func (a *app) configPath() string {
	if dir := a.getenv("MOAT_CONF"); dir != "" {
		return filepath.Join(dir, "config.yml")
	}
	base := a.getenv("XDG_CONFIG_HOME")
	if base == "" {
		base = filepath.Join(a.getenv("HOME"), ".config")
	}
	return filepath.Join(base, "moat", "config.yml")
}

// config loads the config file once; a missing file is an empty config.
func (a *app) config() (*clientConfig, error) {
	if a.conf != nil {
		return a.conf, nil
	}
	conf := &clientConfig{path: a.configPath()}
	buf, err := os.ReadFile(conf.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := yaml.Unmarshal(buf, conf); err != nil {
			return nil, fmt.Errorf("invalid config file %s: %w", conf.path, err)
		}
	}
	a.conf = conf
	return conf, nil
}

func (c *clientConfig) project(remote string) string {
	if p := c.Remotes[remote].Project; p != "" {
		return p
	}
	return "default"
}

func (c *clientConfig) setProject(remote, project string) {
	if c.Remotes == nil {
		c.Remotes = map[string]remoteConfig{}
	}
	rc := c.Remotes[remote]
	rc.Project = project
	if rc == (remoteConfig{}) {
		delete(c.Remotes, remote)
		return
	}
	c.Remotes[remote] = rc
}

// save writes the file atomically, readable only by its owner: it will
// hold remote addresses and certificate paths.
func (c *clientConfig) save() error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".config.yml-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), c.path)
}

// parseRemote splits lxc's "remote:name" syntax; without a prefix the
// default remote is meant. A prefix holding "/" is part of an API path
// (`moat query '/1.0/x?a=b:c'`), not a remote.
func (a *app) parseRemote(arg string) (remote, name string, err error) {
	remote, name, found := strings.Cut(arg, ":")
	if !found || strings.Contains(remote, "/") {
		return a.defaultRemote(), arg, nil
	}
	return remote, name, a.checkRemote(remote)
}

// remoteArg takes an optional leading "remote:" argument off args, as in
// `moat info remote:`.
func (a *app) remoteArg(args []string) (string, []string, error) {
	if len(args) > 0 && strings.HasSuffix(args[0], ":") {
		remote := strings.TrimSuffix(args[0], ":")
		return remote, args[1:], a.checkRemote(remote)
	}
	return a.defaultRemote(), args, nil
}

// connectArg connects to the remote named by an optional "remote:" first
// argument, or to the default remote.
func (a *app) connectArg(args []string) (*client.Client, error) {
	remote, _, err := a.remoteArg(args)
	if err != nil {
		return nil, err
	}
	return a.connect(remote)
}

// connectNamed connects to the remote of a "[remote:]NAME" argument and
// returns the remote and NAME, which must not be empty (what names the kind
// of object).
func (a *app) connectNamed(arg, what string) (c *client.Client, remote, name string, err error) {
	remote, name, err = a.parseRemote(arg)
	if err != nil {
		return nil, "", "", err
	}
	if name == "" {
		return nil, "", "", fmt.Errorf("missing %s name", what)
	}
	c, err = a.connect(remote)
	return c, remote, name, err
}

func (a *app) defaultRemote() string {
	if conf, err := a.config(); err == nil && conf.DefaultRemote != "" {
		return conf.DefaultRemote
	}
	return localRemote
}

func (a *app) checkRemote(remote string) error {
	if remote == localRemote {
		return nil
	}
	if conf, err := a.config(); err == nil && conf.Remotes[remote].Addr != "" {
		return nil
	}
	return fmt.Errorf("remote %q doesn't exist", remote)
}
