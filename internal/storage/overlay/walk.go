package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrCrossesMount reports a tree that holds a mount point (or another
// filesystem): walks here never descend into one.
var ErrCrossesMount = errors.New("refusing to cross into another mount")

// visit is called for every entry of a walked directory, by directory fd
// and name, with the entry's lstat. A directory is visited after its
// contents.
type visit func(dir int, name string, st *unix.Stat_t) error

// walk calls fn for the contents of the directory dir (an fd) whose
// filesystem is dev, depth first. Every step is relative to an fd opened
// with O_NOFOLLOW, so a symlink is never followed, and a subdirectory on
// another device (a mount point) stops the walk with ErrCrossesMount.
func walk(dir int, dev uint64, path string, fn visit) error {
	// A fresh open file description: a dup would share (and leave at the
	// end) dir's directory offset, and the next walk of dir would see
	// nothing.
	own, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	df := os.NewFile(uintptr(own), path)
	names, err := df.Readdirnames(-1)
	df.Close()
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(path, name), err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if st.Dev != dev {
				return fmt.Errorf("%w: %s", ErrCrossesMount, filepath.Join(path, name))
			}
			sub, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(path, name), err)
			}
			var sst unix.Stat_t
			err = unix.Fstat(sub, &sst)
			if err == nil && (sst.Dev != dev || sst.Ino != st.Ino) {
				err = fmt.Errorf("%w: %s", ErrCrossesMount, filepath.Join(path, name))
			}
			if err == nil {
				err = walk(sub, dev, filepath.Join(path, name), fn)
			}
			unix.Close(sub)
			if err != nil {
				return err
			}
		}
		if err := fn(dir, name, &st); err != nil {
			return err
		}
	}
	return nil
}

// openRoot opens the directory path (not following a symlink at its end)
// and returns its fd and device.
func openRoot(path string) (int, uint64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, st.Dev, nil
}

// RemoveTree removes the directory path and everything in it, on path's
// own filesystem only. It refuses (ErrCrossesMount, having removed what
// it reached before) to enter a mount point, so a mount left in the tree
// (an overlay whose lower layer is an image) is never emptied. path
// itself must not be a mount point either: its device must be its
// parent's.
func RemoveTree(path string) error {
	path = filepath.Clean(path)
	parent, pdev, err := openRoot(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	fd, dev, err := openRoot(path)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return unix.Unlinkat(parent, filepath.Base(path), 0)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if dev != pdev {
		return fmt.Errorf("%w: %s", ErrCrossesMount, path)
	}
	err = walk(fd, dev, path, func(dir int, name string, st *unix.Stat_t) error {
		flags := 0
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			flags = unix.AT_REMOVEDIR
		}
		if err := unix.Unlinkat(dir, name, flags); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %s: %w", filepath.Join(path, name), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return unix.Unlinkat(parent, filepath.Base(path), unix.AT_REMOVEDIR)
}
