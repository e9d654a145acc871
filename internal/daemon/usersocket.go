package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/endpoint"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/store"
)

// UserSocketPath is the per-user socket.
func (d *Daemon) UserSocketPath() string { return filepath.Join(d.cfg.StateDir, "user", "unix.socket") }

// startUserSocket serves the per-user socket when --user-group is set.
func (d *Daemon) startUserSocket() error {
	if d.cfg.UserGroup == "" {
		return nil
	}
	dir := filepath.Dir(d.UserSocketPath())
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	l, err := endpoint.ListenUnix(d.UserSocketPath(), int(d.unix.UserGID))
	if err != nil {
		return err
	}
	d.userServer = &http.Server{
		Handler:           d.router,
		ConnContext:       endpoint.UserConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       endpoint.IdleTimeout,
	}
	go func() {
		if err := d.userServer.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("user socket server stopped", "err", err)
		}
	}()
	return nil
}

func (d *Daemon) closeUserSocket() {
	if d.userServer != nil {
		d.userServer.Close()
	}
}

// userProjectConfig confines a per-user socket user: a restricted project
// (so the restricted.* defaults block privilege, nesting, low-level keys and
// device passthrough), ID maps limited to the user's own uid and gid, and
// host disks limited to the user's home directory.
func userProjectConfig(id *identity.Identity, home string) map[string]string {
	cfg := map[string]string{
		"features.images":            "true",
		"features.profiles":          "true",
		"features.storage.volumes":   "true",
		"features.storage.buckets":   "true",
		"features.networks":          "false",
		"restricted":                 "true",
		"restricted.idmap.uid":       strconv.FormatUint(uint64(id.UID), 10),
		"restricted.idmap.gid":       strconv.FormatUint(uint64(id.GID), 10),
		"restricted.devices.disk":    "managed",
		"restricted.networks.access": "",
	}
	if config.AbsPath(home) == nil && home != "/" {
		cfg["restricted.devices.disk"] = "allow"
		cfg["restricted.devices.disk.paths"] = home
	}
	return config.Normalize(cfg)
}

// userDefaultProfile is the default profile of a per-user project: the
// install's isolated ID map and root disk, plus the user's own uid and gid
// mapped through unchanged, so files in a home directory the user attaches
// keep their owner inside the container.
func userDefaultProfile(id *identity.Identity, project string) store.Profile {
	p := defaultProfile(project)
	p.Description = fmt.Sprintf("Default profile of %s", id.Username)
	p.Config["raw.idmap"] = fmt.Sprintf("uid %d %d\ngid %d %d", id.UID, id.UID, id.GID, id.GID)
	return p
}

// provisionUser creates the user's project on first contact. It runs
// before the request is routed, so the very first request already finds it.
func (d *Daemon) provisionUser(id *identity.Identity) error {
	project := id.DefaultProject
	if _, done := d.provisioned.Load(project); done {
		return nil
	}
	home := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(id.UID), 10)); err == nil {
		home = filepath.Clean(u.HomeDir)
	}
	cfg := userProjectConfig(id, home)
	if err := config.Project.Check(cfg); err != nil {
		return err
	}
	created := false
	err := d.store.Update(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.Project(project); err == nil {
			return nil
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		created = true
		err := tx.CreateProject(store.Project{Name: project, Config: cfg,
			Description: fmt.Sprintf("User restricted project for %q (%d)", id.Username, id.UID)})
		if err != nil {
			return err
		}
		return tx.CreateProfile(userDefaultProfile(id, project))
	})
	if err != nil {
		return fmt.Errorf("provision project %s: %w", project, err)
	}
	if created {
		d.bus.Lifecycle("project-created", projectURL(project), "", id.Requestor(), map[string]any{"user": id.Username})
		d.log.Info("created per-user project", "project", project, "user", id.Username)
	}
	d.provisioned.Store(project, true)
	return nil
}
