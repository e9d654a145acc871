// Package storage holds storage pools. The only driver is "dir": a pool is
// a directory, an instance's root disk is POOL/containers/NAME/rootfs.
//
// POOL and POOL/containers are 0711 root; POOL/containers/NAME is mode 0100
// owned by the container's root (host root for privileged containers), as
// LXD does since CVE-2016-1582: no other host user can reach a rootfs, in
// which setuid binaries stay owned by host root (images are never chowned;
// unprivileged containers see them through an idmapped mount).
package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is a dir-driver pool.
type Dir struct {
	Name string
	Path string
}

// OpenDir creates (if needed) the pool's directories and removes the
// staging directories of creates that a crash interrupted, and every
// spare rootfs (see spares.go).
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
		_ = removeAll(s)
	}
	if err := p.openSpares(); err != nil {
		return nil, err
	}
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

// CreateContainer copies the image rootfs src to a new container dir
// owned by uid:gid. The copy is staged and renamed into place, so the
// container dir either exists complete or not at all.
func (p *Dir) CreateContainer(name, src string, uid, gid int) error {
	dst := p.ContainerDir(name)
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("storage for %q already exists", name)
	}
	stage, err := os.MkdirTemp(p.containers(), ".tmp-"+name+"-")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = removeAll(stage)
		}
	}()
	if err := os.Chmod(stage, 0o100); err != nil {
		return err
	}
	if err := os.Lchown(stage, uid, gid); err != nil {
		return err
	}
	if err := CopyTree(src, filepath.Join(stage, "rootfs")); err != nil {
		return fmt.Errorf("copying the image: %w", err)
	}
	if err := os.Rename(stage, dst); err != nil {
		return err
	}
	ok = true
	return nil
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

// RenameContainer moves a container's storage.
func (p *Dir) RenameContainer(from, to string) error {
	if _, err := os.Lstat(p.ContainerDir(to)); err == nil {
		return fmt.Errorf("storage for %q already exists", to)
	}
	return os.Rename(p.ContainerDir(from), p.ContainerDir(to))
}

// DeleteContainer removes a container's storage. The dir is first moved
// to a staging name, so a crash midway leaves something OpenDir cleans.
func (p *Dir) DeleteContainer(name string) error {
	d := p.ContainerDir(name)
	if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	tmp, err := os.MkdirTemp(p.containers(), ".tmp-del-")
	if err != nil {
		return err
	}
	if err := os.Rename(d, filepath.Join(tmp, "c")); err != nil {
		os.Remove(tmp)
		return err
	}
	return removeAll(tmp)
}

// removeAll removes a tree; it first makes directories writable and
// searchable for root (0100 and 0555 dirs are fine for root anyway).
func removeAll(p string) error { return os.RemoveAll(p) }

// CopyTree copies a directory tree, keeping owners, modes (setuid
// included) and symlinks, never following a symlink. Hard links inside the
// tree are kept as hard links.
func CopyTree(src, dst string) error { return copyTree(src, dst, nil) }

var errCanceled = errors.New("copy canceled")

// copyTree is CopyTree; it stops with an error once canceled (if not
// nil) reports true.
func copyTree(src, dst string, canceled func() bool) error {
	links := map[[2]uint64]string{}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if canceled != nil && canceled() {
			return errCanceled
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		mode := st.Mode & 0o7777
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		case unix.S_IFLNK:
			ln, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(ln, target); err != nil {
				return err
			}
			return os.Lchown(target, int(st.Uid), int(st.Gid))
		case unix.S_IFREG:
			key := [2]uint64{st.Dev, st.Ino}
			if st.Nlink > 1 {
				if first, ok := links[key]; ok {
					return os.Link(first, target)
				}
				links[key] = target
			}
			if err := copyFile(path, target); err != nil {
				return err
			}
		default:
			return nil // device nodes and fifos are not copied
		}
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return unix.Fchmodat(unix.AT_FDCWD, target, mode, 0)
	})
}

func copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	fi, err := in.Stat()
	if err != nil {
		out.Close()
		return err
	}
	// copy_file_range: reflinks or in-kernel copies where possible.
	_, err = out.ReadFrom(in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	_ = fi
	return err
}
