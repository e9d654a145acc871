// Package storage holds storage pools. The only driver is "dir": a pool is
// a directory, an instance's root disk is POOL/containers/NAME/rootfs, an
// overlay whose lower layer is the image's rootfs (package overlay), so a
// create costs the same whatever the image's size.
//
// POOL and POOL/containers are 0711 root; POOL/containers/NAME is mode 0100
// owned by the container's root (host root for privileged containers), as
// LXD does since CVE-2016-1582: no other host user can reach a rootfs, in
// which setuid binaries stay owned by host root (images are never chowned;
// unprivileged containers see them through an idmapped lower layer).
package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/idmap"
	"github.com/moat/moat/internal/storage/overlay"
)

// Dir is a dir-driver pool.
type Dir struct {
	Name string
	Path string
}

// OpenDir creates (if needed) the pool's directories and removes the
// staging directories of creates and deletes that a crash interrupted.
func OpenDir(name, path string) (*Dir, error) {
	p := &Dir{Name: name, Path: path}
	for _, d := range []string{path, p.containers()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chown(d, 0, 0); err != nil {
			return nil, err
		}
	}
	stale, _ := filepath.Glob(filepath.Join(p.containers(), ".tmp-*"))
	for _, s := range stale {
		_ = removeStaged(s)
	}
	// POOL/spares held the pre-copied rootfs of moatd versions that
	// copied images; nothing uses it any more.
	_ = removeStaged(filepath.Join(path, "spares"))
	return p, nil
}

func (p *Dir) containers() string { return filepath.Join(p.Path, "containers") }

// ContainerDir is the 0100 directory of a container.
func (p *Dir) ContainerDir(name string) string { return filepath.Join(p.containers(), name) }

// Rootfs is a container's root filesystem.
func (p *Dir) Rootfs(name string) string { return filepath.Join(p.ContainerDir(name), "rootfs") }

// Containers lists the container directories present in the pool.
func (p *Dir) Containers() []string {
	entries, _ := os.ReadDir(p.containers())
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Container storage layout, inside POOL/containers/NAME:
//
//	rootfs/   mount point of the overlay the container runs on
//	upper/    the overlay's upper layer: everything the container changed,
//	          owned by host ids (see package overlay)
//	work/     the overlay's work dir
//	idmap     JSON of the ID map upper/ is written with ("[]": host ids
//	          as they are, a privileged container)
//	idmap.shifting  present only while upper/ is being shifted to the
//	          map it holds
//
// The image rootfs is the lower layer, passed in by the caller at each
// mount: storage never writes it.
const (
	upperDir    = "upper"
	workDir     = "work"
	mapFile     = "idmap"
	shiftingMap = "idmap.shifting"
)

// ErrNoOverlay reports container storage without an upper layer: made by
// a moatd that copied images (before overlay root filesystems).
var ErrNoOverlay = errors.New("container storage has no overlay layers (made by an older moatd): recreate the instance")

func (p *Dir) layers(name, lower string) overlay.Layers {
	d := p.ContainerDir(name)
	return overlay.Layers{Lower: lower, Upper: filepath.Join(d, upperDir), Work: filepath.Join(d, workDir)}
}

// CreateContainer makes a container's storage over the image rootfs
// lower and mounts it: empty upper and work layers, the upper's root
// taking the image root's mode and owner (in set's host ids), and the
// record of set. It is staged and renamed into place, so the container
// dir either exists complete or not at all; the mount comes last.
func (p *Dir) CreateContainer(name, lower string, set idmap.Set) error {
	dst := p.ContainerDir(name)
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("storage for %q already exists", name)
	}
	var root unix.Stat_t
	if err := unix.Lstat(lower, &root); err != nil {
		return fmt.Errorf("image rootfs: %w", err)
	}
	uid, uok := overlay.HostID(set, true, int64(root.Uid))
	gid, gok := overlay.HostID(set, false, int64(root.Gid))
	if !uok || !gok {
		return fmt.Errorf("the image's root directory owner %d:%d is outside the container's map", root.Uid, root.Gid)
	}
	stage, err := os.MkdirTemp(p.containers(), ".tmp-"+name+"-")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = overlay.RemoveTree(stage)
		}
	}()
	for _, d := range []string{upperDir, workDir, "rootfs"} {
		if err := os.Mkdir(filepath.Join(stage, d), 0o700); err != nil {
			return err
		}
	}
	up := filepath.Join(stage, upperDir)
	if err := os.Lchown(up, int(uid), int(gid)); err != nil {
		return err
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, up, root.Mode&0o7777, 0); err != nil {
		return err
	}
	if err := writeMap(filepath.Join(stage, mapFile), set); err != nil {
		return err
	}
	owner, group := rootOwner(set)
	if err := os.Chmod(stage, 0o100); err != nil {
		return err
	}
	if err := os.Lchown(stage, owner, group); err != nil {
		return err
	}
	if err := os.Rename(stage, dst); err != nil {
		return err
	}
	ok = true
	if err := overlay.Mount(p.layers(name, lower), p.Rootfs(name), set); err != nil {
		_ = p.DeleteContainer(name)
		return err
	}
	return nil
}

// rootOwner is the host uid and gid of the container's root.
func rootOwner(set idmap.Set) (int, int) {
	u, _ := overlay.HostID(set, true, 0)
	g, _ := overlay.HostID(set, false, 0)
	return int(u), int(g)
}

func writeMap(path string, set idmap.Set) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(set.JSON()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readMap(path string) (idmap.Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return idmap.ParseJSON(string(b))
}

// LayerMap is the ID map a container's upper layer is written with, which
// is also the map its mounted overlay shows the image through.
func (p *Dir) LayerMap(name string) (idmap.Set, error) {
	d := p.ContainerDir(name)
	if _, err := os.Lstat(filepath.Join(d, upperDir)); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(d); err == nil {
			return nil, fmt.Errorf("%s: %w", name, ErrNoOverlay)
		}
	}
	return readMap(filepath.Join(d, mapFile))
}

// Mount makes sure a container's overlay is mounted and shows the image
// and the upper layer through set. A mount already there is kept if it is
// this container's overlay with that map (moatd restarted); with another
// map it is unmounted and the upper layer shifted to set first. The
// container must not be running when set differs from LayerMap.
func (p *Dir) Mount(name, lower string, set idmap.Set) error {
	l := p.layers(name, lower)
	cur, err := p.LayerMap(name)
	if err != nil {
		return err
	}
	target := p.Rootfs(name)
	mounted, err := overlay.Mounted(target, l.Upper)
	if err != nil {
		return err
	}
	shifting := filepath.Join(p.ContainerDir(name), shiftingMap)
	next, err := readMap(shifting)
	switch {
	case err == nil:
		// A shift was interrupted: redo it to the map it was going to.
		// Ids already moved fall outside the old range and stay put,
		// unless the old and new host ranges overlap at an offset
		// (then a restart mid-shift can move some ids twice).
		if err := p.shift(name, l, cur, next); err != nil {
			return err
		}
		cur, mounted = next, false
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if mounted && cur.JSON() == set.JSON() {
		return nil
	}
	if mounted {
		if err := overlay.Unmount(target); err != nil {
			return err
		}
	}
	if cur.JSON() != set.JSON() {
		if err := writeMap(shifting, set); err != nil {
			return err
		}
		if err := p.shift(name, l, cur, set); err != nil {
			return err
		}
	}
	return overlay.Mount(l, target, set)
}

// shift moves the upper layer from map from to map to and records to.
func (p *Dir) shift(name string, l overlay.Layers, from, to idmap.Set) error {
	if err := overlay.Unmount(p.Rootfs(name)); err != nil {
		return err
	}
	d := p.ContainerDir(name)
	if err := overlay.Shift(l.Upper, from, to); err != nil {
		if errors.Is(err, overlay.ErrUnmappable) {
			// Refused before any change: nothing to resume, and the
			// next mount (another map, or the files API) starts clean.
			_ = os.Remove(filepath.Join(d, shiftingMap))
		}
		return fmt.Errorf("shifting the files of %s to its new ID map: %w", name, err)
	}
	if err := writeMap(filepath.Join(d, mapFile), to); err != nil {
		return err
	}
	return os.Remove(filepath.Join(d, shiftingMap))
}

// EnsureMounted mounts a container's overlay with the map its upper layer
// is written with (after a host reboot, or a rename) and returns that map.
func (p *Dir) EnsureMounted(name, lower string) (idmap.Set, error) {
	set, err := p.LayerMap(name)
	if err != nil {
		return nil, err
	}
	if next, err := readMap(filepath.Join(p.ContainerDir(name), shiftingMap)); err == nil {
		set = next // Mount finishes the interrupted shift
	}
	return set, p.Mount(name, lower, set)
}

// SetOwner re-asserts the container dir's owner and mode (the map, and so
// the container's root, may change between starts).
func (p *Dir) SetOwner(name string, uid, gid int) error {
	d := p.ContainerDir(name)
	if err := os.Lchown(d, uid, gid); err != nil {
		return err
	}
	return os.Chmod(d, 0o100)
}

// RenameContainer moves a container's storage. The overlay is unmounted
// first (its mount options name the old path); the caller mounts it again
// under the new name with EnsureMounted.
func (p *Dir) RenameContainer(from, to string) error {
	if _, err := os.Lstat(p.ContainerDir(to)); err == nil {
		return fmt.Errorf("storage for %q already exists", to)
	}
	if err := overlay.Unmount(p.Rootfs(from)); err != nil {
		return err
	}
	return os.Rename(p.ContainerDir(from), p.ContainerDir(to))
}

// A rename moves storage and renames the database row; a crash between
// the two must not leave the row naming storage that is not there (the
// daemon's start would then remove the storage as an interrupted create).
// So the rename is recorded first, in POOL/containers/.rename-TO holding
// FROM, and the row is renamed before the storage moves: whatever the
// crash interrupts, the record says which way to finish (RecoverRenames).

func (p *Dir) renameRecord(to string) string {
	return filepath.Join(p.containers(), ".rename-"+to)
}

// BeginRename records that the storage of from is about to become to's.
func (p *Dir) BeginRename(from, to string) error {
	f, err := os.OpenFile(p.renameRecord(to), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(from)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(p.containers())
	}
	return err
}

// EndRename drops the record of a rename to to, done or abandoned.
func (p *Dir) EndRename(to string) {
	_ = os.Remove(p.renameRecord(to))
	_ = syncDir(p.containers())
}

// RecoverRenames finishes or drops the renames a crash interrupted. named
// reports whether the database has an instance whose storage is name: a
// rename whose row was renamed has its storage moved; any other record is
// dropped (the row still has the old name, and so does the storage).
func (p *Dir) RecoverRenames(named func(name string) bool) error {
	records, _ := filepath.Glob(filepath.Join(p.containers(), ".rename-*"))
	var errs []error
	for _, rec := range records {
		to := strings.TrimPrefix(filepath.Base(rec), ".rename-")
		b, err := os.ReadFile(rec)
		from := string(b)
		if err == nil && named(to) && !named(from) && from != "" && !strings.ContainsAny(from, "/\x00") {
			if _, err := os.Lstat(p.ContainerDir(to)); errors.Is(err, fs.ErrNotExist) {
				if err := p.RenameContainer(from, to); err != nil {
					errs = append(errs, fmt.Errorf("finishing the rename of %s to %s: %w", from, to, err))
					continue
				}
			}
		}
		p.EndRename(to)
	}
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// DeleteContainer unmounts a container's overlay and removes its storage.
// The dir is first moved to a staging name, so a crash midway leaves
// something OpenDir cleans. The removal never crosses into a mount: if
// anything is still mounted inside, it fails rather than reach the image.
func (p *Dir) DeleteContainer(name string) error {
	d := p.ContainerDir(name)
	if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := overlay.UnmountUnder(d); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(p.containers(), ".tmp-del-")
	if err != nil {
		return err
	}
	if err := os.Rename(d, filepath.Join(tmp, "c")); err != nil {
		os.Remove(tmp)
		return err
	}
	return removeStaged(tmp)
}

// removeStaged removes a staging dir, unmounting whatever a crash left
// mounted in it first.
func removeStaged(dir string) error {
	if err := overlay.UnmountUnder(dir); err != nil {
		return err
	}
	return overlay.RemoveTree(dir)
}
