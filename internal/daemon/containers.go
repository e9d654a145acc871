package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/idmap"
	"github.com/moat/moat/internal/image"
	"github.com/moat/moat/internal/instance"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/storage"
	"github.com/moat/moat/internal/store"
)

// containers is the state of the container feature: image store, storage
// pool, ID map host range and driver handles.
type containers struct {
	images  *image.Store
	pool    *storage.Dir
	lxcPath string
	tag     string
	host    idmap.Host
	hostErr error
	handles instance.Handles

	// allocMu serialises creates and config changes: isolated ID map
	// allocation reads every other allocation and must persist its result
	// before the next one reads.
	allocMu sync.Mutex
	locks   sync.Map // project/name -> *sync.Mutex
	watches watches  // stops from inside (watch.go)
}

// instLock serialises lifecycle changes of one instance.
func (c *containers) instLock(project, name string) *sync.Mutex {
	m, _ := c.locks.LoadOrStore(project+"/"+name, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// defaultProfile is what a fresh install's default profile holds
// (DESIGN.md 1.8): an isolated ID map per container and a root disk.
func defaultProfile(project string) store.Profile {
	return store.Profile{
		Project: project, Name: "default", Description: "Default Moat profile",
		Config:  map[string]string{"security.idmap.isolated": "true"},
		Devices: store.Devices{"root": {"type": "disk", "path": "/", "pool": "default"}},
	}
}

// initContainers opens the image store and the default pool, creates the
// default pool and profile on a fresh install, and cleans what a crash
// left behind (staging dirs, storage of instances that were never
// committed, ephemeral instances that stopped while moatd was down), and
// mounts the root filesystems of the instances.
func (d *Daemon) initContainers(ctx context.Context) error {
	c := &containers{lxcPath: filepath.Join(d.cfg.StateDir, "lxc")}
	if abs, _ := filepath.Abs(d.cfg.StateDir); abs != "/var/lib/moat" {
		sum := sha256.Sum256([]byte(abs))
		c.tag = "m" + hex.EncodeToString(sum[:3]) + "."
	}
	var err error
	c.host, c.hostErr = idmap.DiscoverHost()
	if c.images, err = image.Open(filepath.Join(d.cfg.StateDir, "images")); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	if err := os.MkdirAll(c.lxcPath, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(c.lxcPath, 0o711); err != nil {
		return err
	}
	poolPath := filepath.Join(d.cfg.StateDir, "storage-pools", "default")
	if err := os.MkdirAll(filepath.Dir(poolPath), 0o711); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Dir(poolPath), 0o711); err != nil {
		return err
	}
	var instances []store.Instance
	var images []store.Image
	err = d.store.Update(ctx, func(tx *store.Tx) error {
		pools, err := tx.StoragePools()
		if err != nil {
			return err
		}
		if len(pools) == 0 {
			if err := tx.CreateStoragePool(store.StoragePool{Name: "default", Driver: "dir", Config: map[string]string{"source": poolPath}}); err != nil {
				return err
			}
		}
		if _, err := tx.Profile("default", "default"); errors.Is(err, errdefs.ErrNotFound) {
			if err := tx.CreateProfile(defaultProfile("default")); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if instances, err = tx.Instances(""); err != nil {
			return err
		}
		images, err = tx.Images("")
		return err
	})
	if err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	if c.pool, err = storage.OpenDir("default", poolPath); err != nil {
		return fmt.Errorf("storage pool: %w", err)
	}
	known := map[string]bool{}
	for _, in := range instances {
		known[c.lxcName(in.Project, in.Name)] = true
	}
	if err := c.pool.RecoverRenames(func(name string) bool { return known[name] }); err != nil {
		d.log.Warn("finishing interrupted renames", "err", err)
	}
	d.tidyExecLogs(instances, c.lxcName)
	for _, name := range c.pool.Containers() {
		if !known[name] {
			d.log.Warn("removing storage of an instance that was never created (interrupted create)", "name", name)
			_ = c.pool.DeleteContainer(name)
		}
	}
	// Image files stay while an image or an instance made from it (its
	// lower layer) exists.
	fps := map[string]bool{}
	for _, m := range images {
		fps[m.Fingerprint] = true
	}
	for _, in := range instances {
		fps[in.Config["volatile.base_image"]] = true
	}
	c.images.Prune(func(fp string) bool { return fps[fp] })
	// Root filesystems stay mounted while their instance exists: after a
	// moatd restart the mounts are checked and kept, after a host reboot
	// they are made again.
	for _, in := range instances {
		name := c.lxcName(in.Project, in.Name)
		if _, err := c.pool.EnsureMounted(name, c.images.Rootfs(in.Config["volatile.base_image"])); err != nil {
			d.log.Warn("mounting the root filesystem of an instance", "name", in.Name, "project", in.Project, "err", err)
		}
	}
	d.ct = c
	// Running containers were re-adopted by the above: their state is
	// read live from liblxc. Ephemeral ones that stopped meanwhile go.
	for _, in := range instances {
		if !in.Ephemeral {
			continue
		}
		if st, err := d.instanceStatus(in); err == nil && st == "Stopped" {
			if err := d.removeInstance(ctx, in); err != nil {
				d.log.Warn("removing stopped ephemeral instance", "name", in.Name, "err", err)
			}
		}
	}
	d.watchRunning(instances)
	return nil
}

// ensureDefaultProfile gives a project with its own profiles the default
// profile LXD creates with the project.
func ensureDefaultProfile(tx *store.Tx, project string) error {
	if _, err := tx.Profile(project, "default"); errors.Is(err, errdefs.ErrNotFound) {
		return tx.CreateProfile(defaultProfile(project))
	} else if err != nil {
		return err
	}
	return nil
}

// featureProject is the project whose images (feature "images") or
// profiles (feature "profiles") a project uses.
func featureProject(tx *store.Tx, project, feature string) (string, error) {
	if project == "default" {
		return project, nil
	}
	p, err := tx.Project(project)
	if err != nil {
		return "", err
	}
	if config.IsTrue(p.Config["features."+feature]) {
		return project, nil
	}
	return "default", nil
}

func randomName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}

// containerEndpoints are the storage, image, profile and instance
// endpoints.
func (d *Daemon) containerEndpoints() []*route.Endpoint {
	var eps []*route.Endpoint
	eps = append(eps, d.storageEndpoints()...)
	eps = append(eps, d.imageEndpoints()...)
	eps = append(eps, d.profileEndpoints()...)
	eps = append(eps, d.instanceEndpoints()...)
	eps = append(eps, d.snapshotEndpoints()...)
	return eps
}

func init() {
	apiExtensions = append(apiExtensions,
		"storage",
		"profile_usedby",
		"container_exec_recording",
		"container_exec_user_group_cwd",
		"container_full",
		"instances",
		"instance_create_start",
		"instance_all_projects",
		"instance_force_delete",
		// ?filter= on instance and image lists (package filter); lxc
		// 5.0.2's "lxc list" refuses to run without it.
		"api_filtering",
		// recursion=2;fields=state.disk,state.network on instance lists.
		"instances_state_selective_recursion",
	)
}

// lxcName is an instance's liblxc and cgroup name. Cgroup names are
// host-wide: a daemon whose state dir is not the default prefixes its
// names with a tag of the dir, so test daemons and a production daemon
// on one host never touch each other's cgroups.
func (c *containers) lxcName(project, name string) string {
	return c.tag + instance.LXCName(project, name)
}

// tidyExecLogs keeps STATE/logs to one directory per instance, named by
// its volatile.uuid: a directory of an older moatd, named after the
// instance, is moved there, and one of no instance (gone while moatd was
// down, or never removed) is deleted, so no later instance can see it.
func (d *Daemon) tidyExecLogs(instances []store.Instance, lxcName func(project, name string) string) {
	root := filepath.Join(d.cfg.StateDir, "logs")
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	keep := map[string]bool{}
	for _, in := range instances {
		dir, err := d.execLogDir(in.Config)
		if err != nil {
			continue
		}
		keep[filepath.Base(dir)] = true
		old := filepath.Join(root, lxcName(in.Project, in.Name))
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			_ = os.Rename(old, dir)
		}
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}
