package overlay

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/idmap"
)

// ErrForeignMount reports that something other than the expected overlay
// is mounted where a container's rootfs belongs.
var ErrForeignMount = errors.New("unexpected mount on a container rootfs")

// Layers are the directories of one overlay.
type Layers struct {
	Lower string // the image rootfs: read-only, never written
	Upper string
	Work  string
}

// Mount mounts the overlay of l at target. With a non-empty set the lower
// layer is idmapped through it (unprivileged container); with an empty
// one it is shown as it is on disk (privileged).
func Mount(l Layers, target string, set idmap.Set) error {
	lower, err := unix.OpenTree(unix.AT_FDCWD, l.Lower, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("cloning the image mount: %w", err)
	}
	defer unix.Close(lower)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if len(set) > 0 {
		ns, err := Userns(set)
		if err != nil {
			return err
		}
		defer unix.Close(ns)
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(ns)
	}
	if err := unix.MountSetattr(lower, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmapping the image mount: %w", err)
	}
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetFd(fs, "lowerdir+", lower); err != nil {
		return fmt.Errorf("overlay lower layer: %w", err)
	}
	if err := unix.FsconfigSetString(fs, "upperdir", l.Upper); err != nil {
		return fmt.Errorf("overlay upper layer: %w", err)
	}
	if err := unix.FsconfigSetString(fs, "workdir", l.Work); err != nil {
		return fmt.Errorf("overlay work dir: %w", err)
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("creating the overlay: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mnt)
	if err := unix.MoveMount(mnt, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attaching the overlay at %s: %w", target, err)
	}
	return nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point  string
	fstype string
	super  string // superblock options
}

func mounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		out = append(out, mountEntry{point: unescape(fields[4]), fstype: tail[0], super: unescape(tail[2])})
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mounted reports whether the overlay with upper layer upper is mounted
// at target. Anything else mounted on top of target is ErrForeignMount:
// it is never trusted as a container's root filesystem.
func Mounted(target, upper string) (bool, error) {
	ms, err := mounts()
	if err != nil {
		return false, err
	}
	var top *mountEntry
	for i := range ms {
		if ms[i].point == target {
			top = &ms[i] // later lines are mounted on top of earlier ones
		}
	}
	if top == nil {
		return false, nil
	}
	if top.fstype != "overlay" || !hasOption(top.super, "upperdir", upper) {
		return false, fmt.Errorf("%w: %s (%s %s)", ErrForeignMount, target, top.fstype, top.super)
	}
	return true, nil
}

// hasOption reports whether the comma-separated options hold key=value.
// Overlay escapes commas in paths with a backslash; the value is compared
// in that form.
func hasOption(opts, key, value string) bool {
	want := key + "=" + strings.ReplaceAll(value, ",", `\,`)
	start := 0
	for i := 0; i <= len(opts); i++ {
		switch {
		case i < len(opts) && opts[i] == '\\':
			i++ // escaped character, never a separator
		case i == len(opts) || opts[i] == ',':
			if opts[start:i] == want {
				return true
			}
			start = i + 1
		}
	}
	return false
}

// Unmount removes every mount stacked on target, lazily when one is busy
// (an open file in it): either way it is gone from the tree at once.
func Unmount(target string) error {
	for {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not (or no longer) a mount point
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmounting %s: %w", target, err)
			}
		default:
			return fmt.Errorf("unmounting %s: %w", target, err)
		}
	}
}

// UnmountUnder detaches every mount at or below dir, deepest first.
func UnmountUnder(dir string) error {
	dir = filepath.Clean(dir)
	ms, err := mounts()
	if err != nil {
		return err
	}
	var points []string
	for _, m := range ms {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			points = append(points, m.point)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		errs = append(errs, Unmount(p))
	}
	return errors.Join(errs...)
}
