package daemon

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/idmap"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/storage/overlay"
)

// The files API resolves every path with openat2(RESOLVE_IN_ROOT) on the
// instance's rootfs: "..", absolute symlinks and relative ones all resolve
// as they would inside the container, so no path or symlink planted by the
// container can reach a host file. The rootfs is the instance's mounted
// overlay, which shows host ids (the container's, shifted by its map): the
// uid/gid headers are translated with that map both ways.

const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// lxc checks these before it pushes a directory (file push -r, -p), a
// symlink, appends, or deletes a file; the handlers below do all four.
func init() {
	apiExtensions = append(apiExtensions, "directory_manipulation", "file_symlinks", "file_append", "file_delete")
}

// overflowID is what the kernel shows a container for a host id outside
// its map; the files API reports such owners the same way.
const overflowID = 65534

// openRootfs opens the instance's rootfs directory, mounting it first if
// needed (after a host reboot), and returns the ID map it shows.
func (d *Daemon) openRootfs(r *route.Request) (int, idmap.Set, error) {
	l, err := d.loadInstance(r.Project, r.Var("name"))
	if err != nil {
		return -1, nil, err
	}
	// Under the instance lock: a start may be shifting the files to a
	// new map, a delete unmounting them.
	mu := d.ct.instLock(r.Project, r.Var("name"))
	mu.Lock()
	defer mu.Unlock()
	name := d.ct.lxcName(r.Project, r.Var("name"))
	set, err := d.ct.pool.EnsureMounted(name, d.ct.images.Rootfs(l.Config["volatile.base_image"]))
	if err != nil {
		return -1, nil, fmt.Errorf("mount rootfs: %w", err)
	}
	fd, err := unix.Open(d.ct.pool.Rootfs(name), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("open rootfs: %w", err)
	}
	return fd, set, nil
}

// containerID is the id the container sees for a host id.
func containerID(set idmap.Set, uid bool, host uint32) uint64 {
	if id, ok := overlay.ContainerID(set, uid, int64(host)); ok {
		return uint64(id)
	}
	return overflowID
}

func filePath(r *route.Request) (string, error) {
	p := r.Query("path")
	if p == "" || strings.ContainsRune(p, 0) {
		return "", errdefs.Invalidf("Missing or invalid \"path\" query parameter")
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return path.Clean(p), nil
}

func fileErr(p string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return errdefs.NotFoundf("Path %q not found", p)
	case errors.Is(err, unix.EEXIST):
		return errdefs.Conflictf("Path %q already exists", p)
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ELOOP),
		errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EXDEV), errors.Is(err, errNotRegular):
		return errdefs.Invalidf("Path %q: %v", p, err)
	}
	return fmt.Errorf("path %q: %w", p, err)
}

func (d *Daemon) getInstanceFile(r *route.Request) response.Response {
	p, err := filePath(r)
	if err != nil {
		return response.Error(err)
	}
	root, set, err := d.openRootfs(r)
	if err != nil {
		return response.Error(err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, p, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveInRoot})
	if err != nil {
		return response.Error(fileErr(p, err))
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return response.Error(err)
	}
	hdr := func(w http.ResponseWriter, typ string) {
		w.Header().Set("X-LXD-uid", strconv.FormatUint(containerID(set, true, st.Uid), 10))
		w.Header().Set("X-LXD-gid", strconv.FormatUint(containerID(set, false, st.Gid), 10))
		w.Header().Set("X-LXD-mode", fmt.Sprintf("%04o", st.Mode&0o7777))
		w.Header().Set("X-LXD-type", typ)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return response.Error(err)
		}
		target := buf[:n]
		d.fileEvent("instance-file-retrieved", r, p)
		return response.Manual(func(w http.ResponseWriter) error {
			hdr(w, "symlink")
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusOK)
			_, err := w.Write(target)
			return err
		})
	case unix.S_IFDIR:
		dfd, err := reopen(fd, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return response.Error(fileErr(p, err))
		}
		dir := os.NewFile(uintptr(dfd), p)
		names, err := dir.Readdirnames(-1)
		dir.Close()
		if err != nil {
			return response.Error(err)
		}
		if names == nil {
			names = []string{}
		}
		sync := response.Sync(names, nil)
		d.fileEvent("instance-file-retrieved", r, p)
		return response.Manual(func(w http.ResponseWriter) error {
			hdr(w, "directory")
			return sync.Render(w)
		})
	case unix.S_IFREG:
		ffd, err := reopen(fd, unix.O_RDONLY)
		if err != nil {
			return response.Error(fileErr(p, err))
		}
		f := os.NewFile(uintptr(ffd), p)
		d.fileEvent("instance-file-retrieved", r, p)
		return response.Manual(func(w http.ResponseWriter) error {
			defer f.Close()
			hdr(w, "file")
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(st.Size, 10))
			w.WriteHeader(http.StatusOK)
			// Exactly the announced length, even if the container
			// grows the file meanwhile.
			_, err := io.CopyN(w, f, st.Size)
			return err
		})
	}
	return response.Error(errdefs.Invalidf("Path %q is not a file, directory or symlink", p))
}

func headerID(r *route.Request, name string, def int) (int, error) {
	v := r.HTTP.Header.Get(name)
	if v == "" || v == "-1" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > idmap.MaxID {
		return 0, errdefs.Invalidf("Invalid %s header %q", name, v)
	}
	return int(n), nil
}

// hostID translates a container id from a header to the host id the
// overlay stores.
func hostID(set idmap.Set, uid bool, id int) (int, error) {
	h, ok := overlay.HostID(set, uid, int64(id))
	if !ok {
		name := "X-LXD-gid"
		if uid {
			name = "X-LXD-uid"
		}
		return 0, errdefs.Invalidf("Invalid %s header %d: the instance's ID map does not cover it", name, id)
	}
	return int(h), nil
}

// openParent opens the directory that will hold p (resolved in root) and
// returns it with p's last component.
func openParent(root int, p string) (int, string, error) {
	dir, base := path.Split(p)
	if base == "" || base == "." || base == ".." {
		return -1, "", errdefs.Invalidf("Invalid path %q", p)
	}
	fd, err := unix.Openat2(root, dir, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveInRoot})
	if err != nil {
		return -1, "", fileErr(dir, err)
	}
	return fd, base, nil
}

func (d *Daemon) postInstanceFile(r *route.Request) response.Response {
	p, err := filePath(r)
	if err != nil {
		return response.Error(err)
	}
	if p == "/" {
		return response.Error(errdefs.Invalidf("Cannot replace the root directory"))
	}
	uid, err := headerID(r, "X-LXD-uid", 0)
	if err != nil {
		return response.Error(err)
	}
	gid, err := headerID(r, "X-LXD-gid", 0)
	if err != nil {
		return response.Error(err)
	}
	typ := r.HTTP.Header.Get("X-LXD-type")
	if typ == "" {
		typ = "file"
	}
	// LXD's defaults for what it creates: 0644 files, and 0750
	// directories. Owner and mode apply only to what this request
	// creates: like LXD, an existing file or directory keeps its own.
	defMode := uint32(0o644)
	if typ == "directory" {
		defMode = 0o750
	}
	mode := defMode
	if m := r.HTTP.Header.Get("X-LXD-mode"); m != "" && m != "-1" {
		n, err := strconv.ParseUint(m, 8, 32)
		if err != nil || n > 0o7777 {
			return response.Error(errdefs.Invalidf("Invalid X-LXD-mode header %q: an octal mode is required", m))
		}
		mode = uint32(n)
	}
	write := r.HTTP.Header.Get("X-LXD-write")
	if write != "" && write != "overwrite" && write != "append" {
		return response.Error(errdefs.Invalidf("Invalid X-LXD-write header %q: use overwrite or append", write))
	}
	root, set, err := d.openRootfs(r)
	if err != nil {
		return response.Error(err)
	}
	defer unix.Close(root)
	if uid, err = hostID(set, true, uid); err != nil {
		return response.Error(err)
	}
	if gid, err = hostID(set, false, gid); err != nil {
		return response.Error(err)
	}
	parent, base, err := openParent(root, p)
	if err != nil {
		return response.Error(err)
	}
	defer unix.Close(parent)
	switch typ {
	case "file":
		fd, created, err := openForWrite(parent, base, mode, write == "append")
		if err != nil {
			return response.Error(fileErr(p, err))
		}
		f := os.NewFile(uintptr(fd), p)
		defer f.Close()
		if created {
			// Before the content: the daemon's umask must not show
			// the file to others meanwhile.
			if err := setOwnerMode(fd, uid, gid, mode); err != nil {
				return response.Error(err)
			}
		}
		if _, err := io.Copy(f, r.HTTP.Body); err != nil {
			return response.Error(err)
		}
	case "directory":
		err := unix.Mkdirat(parent, base, 0o700)
		if errors.Is(err, unix.EEXIST) {
			// LXD leaves an existing entry alone; it must be a
			// directory, not a file or a symlink to one.
			var st unix.Stat_t
			if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return response.Error(fileErr(p, err))
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return response.Error(errdefs.Conflictf("Path %q already exists and is not a directory", p))
			}
			break
		}
		if err != nil {
			return response.Error(fileErr(p, err))
		}
		dfd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return response.Error(fileErr(p, err))
		}
		defer unix.Close(dfd)
		if err := setOwnerMode(dfd, uid, gid, mode); err != nil {
			return response.Error(err)
		}
	case "symlink":
		target, err := io.ReadAll(io.LimitReader(r.HTTP.Body, 4097))
		if err != nil {
			return response.Error(err)
		}
		if len(target) == 0 || len(target) > 4096 || strings.ContainsRune(string(target), 0) {
			return response.Error(errdefs.Invalidf("Invalid symlink target"))
		}
		if err := unix.Symlinkat(string(target), parent, base); err != nil {
			// The same link again is a no-op, as with LXD.
			buf := make([]byte, 4097)
			if n, rerr := unix.Readlinkat(parent, base, buf); errors.Is(err, unix.EEXIST) && rerr == nil && string(buf[:n]) == string(target) {
				break
			}
			return response.Error(fileErr(p, err))
		}
		if err := unix.Fchownat(parent, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return response.Error(err)
		}
	default:
		return response.Error(errdefs.Invalidf("Invalid X-LXD-type header %q: use file, directory or symlink", typ))
	}
	d.fileEvent("instance-file-pushed", r, p)
	return response.EmptySync()
}

// errNotRegular refuses to write through anything but a regular file.
var errNotRegular = errors.New("not a regular file")

// openForWrite opens parent/base for writing without ever opening
// anything but a regular file. The container controls its tree: a FIFO
// there would hang the request, and a device node (a privileged
// container can make one) would let the daemon, which no device cgroup
// confines, write a host device. So an existing entry is first opened
// O_PATH (which opens no device and no FIFO), checked, and reopened
// through that very descriptor; a new one is created O_EXCL.
// It reports whether it created the file.
func openForWrite(parent int, base string, mode uint32, appendTo bool) (int, bool, error) {
	pfd, err := unix.Openat(parent, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode&0o700)
		return fd, err == nil, err
	}
	if err != nil {
		return -1, false, err
	}
	defer unix.Close(pfd)
	flags := unix.O_WRONLY | unix.O_TRUNC
	if appendTo {
		flags = unix.O_WRONLY | unix.O_APPEND
	}
	fd, err := reopen(pfd, flags)
	return fd, false, err
}

// setOwnerMode gives what a request created its owner, then its mode (in
// that order: chown clears the set-id bits).
func setOwnerMode(fd, uid, gid int, mode uint32) error {
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	return unix.Fchmod(fd, mode)
}

// reopen opens the inode an O_PATH descriptor refers to, refusing anything
// but regular files and directories. Going through /proc/self/fd reopens
// that inode, not whatever the container has renamed into its path since.
func reopen(pathFD int, flags int) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(pathFD, &st); err != nil {
		return -1, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		if flags&unix.O_DIRECTORY == 0 {
			return -1, errNotRegular
		}
	default:
		return -1, errNotRegular
	}
	return unix.Open(fmt.Sprintf("/proc/self/fd/%d", pathFD), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
}

// fileEvent emits a file lifecycle event for the request's instance.
func (d *Daemon) fileEvent(action string, r *route.Request, p string) {
	d.bus.Lifecycle(action, instanceURL(r.Project, r.Var("name")), r.Project, r.Identity.Requestor(), map[string]any{"path": p})
}

func (d *Daemon) deleteInstanceFile(r *route.Request) response.Response {
	p, err := filePath(r)
	if err != nil {
		return response.Error(err)
	}
	root, _, err := d.openRootfs(r)
	if err != nil {
		return response.Error(err)
	}
	defer unix.Close(root)
	parent, base, err := openParent(root, p)
	if err != nil {
		return response.Error(err)
	}
	defer unix.Close(parent)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return response.Error(fileErr(p, err))
	}
	flags := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(parent, base, flags); err != nil {
		return response.Error(fileErr(p, err))
	}
	d.fileEvent("instance-file-deleted", r, p)
	return response.EmptySync()
}
