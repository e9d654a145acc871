package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/idmap"
)

// ErrUnmappable reports an upper-layer file owned by a container id that
// the new map does not cover.
var ErrUnmappable = errors.New("owned by a container id the new map does not cover")

// ContainerID translates a host id back to the container id set maps it
// from. An empty set is the identity (privileged container).
func ContainerID(set idmap.Set, uid bool, hostid int64) (int64, bool) {
	if len(set) == 0 {
		return hostid, true
	}
	for _, e := range set {
		if ((uid && e.Isuid) || (!uid && e.Isgid)) && hostid >= e.Hostid && hostid < e.Hostid+e.Maprange {
			return e.Nsid + hostid - e.Hostid, true
		}
	}
	return 0, false
}

// HostID translates a container id to a host id; an empty set is the
// identity.
func HostID(set idmap.Set, uid bool, nsid int64) (int64, bool) {
	if len(set) == 0 {
		return nsid, true
	}
	return set.HostID(uid, nsid)
}

// shifter moves host ids from one map to another. Ids outside from (host
// root owning overlay whiteouts, another range altogether) are left alone:
// they never belonged to the container's range.
type shifter struct {
	from, to idmap.Set
	// seen holds the hard-linked inodes already shifted: a second visit
	// would shift them again when the two maps' host ranges overlap.
	seen map[[2]uint64]bool
}

func (s shifter) id(uid bool, host uint32) (uint32, error) {
	ns, ok := ContainerID(s.from, uid, int64(host))
	if !ok {
		return host, nil
	}
	h, ok := HostID(s.to, uid, ns)
	if !ok {
		kind := "gid"
		if uid {
			kind = "uid"
		}
		return 0, fmt.Errorf("%w (%s %d)", ErrUnmappable, kind, ns)
	}
	return uint32(h), nil
}

// Shift rewrites an upper layer written under map from so that it reads
// the same under map to: the owner of every entry, the ids in POSIX ACLs
// and the root id of namespaced (v3) file capabilities. It first checks
// that every id can be moved and changes nothing if one cannot. root
// must be unmounted (no overlay using it) and nothing may write it
// meanwhile.
func Shift(root string, from, to idmap.Set) error {
	s := shifter{from: from, to: to, seen: map[[2]uint64]bool{}}
	fd, dev, err := openRoot(root)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	parent, err := unix.Open(filepath.Dir(root), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	var rst unix.Stat_t
	if err := unix.Fstat(fd, &rst); err != nil {
		return err
	}
	base := filepath.Base(root)
	check := func(_ int, name string, st *unix.Stat_t) error {
		if _, err := s.id(true, st.Uid); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, err := s.id(false, st.Gid); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := walk(fd, dev, root, check); err != nil {
		return err
	}
	if err := check(parent, base, &rst); err != nil {
		return err
	}
	if err := walk(fd, dev, root, s.entry); err != nil {
		return err
	}
	return s.entry(parent, base, &rst)
}

const (
	xattrACLAccess  = "system.posix_acl_access"
	xattrACLDefault = "system.posix_acl_default"
	xattrCaps       = "security.capability"
)

// entry shifts one directory entry.
func (s shifter) entry(dir int, name string, st *unix.Stat_t) error {
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		key := [2]uint64{st.Dev, st.Ino}
		if s.seen[key] {
			return nil
		}
		s.seen[key] = true
	}
	uid, _ := s.id(true, st.Uid)
	gid, _ := s.id(false, st.Gid)
	typ := st.Mode & unix.S_IFMT
	// Extended attributes are read and written through an O_PATH fd's
	// /proc/self/fd link: fd-relative, and never following a symlink the
	// entry might be. Symlinks and special files carry no ACL or caps.
	var proc string
	if typ == unix.S_IFREG || typ == unix.S_IFDIR {
		pfd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer unix.Close(pfd)
		proc = fmt.Sprintf("/proc/self/fd/%d", pfd)
	}
	// chown drops security.capability and the setuid/setgid bits: read
	// the caps before, put both back after.
	var caps []byte
	if typ == unix.S_IFREG {
		caps = getxattr(proc, xattrCaps)
	}
	if uid != st.Uid || gid != st.Gid {
		if err := unix.Fchownat(dir, name, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", name, err)
		}
		if typ != unix.S_IFLNK && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			if err := unix.Fchmodat(dir, name, st.Mode&0o7777, 0); err != nil {
				return fmt.Errorf("chmod %s: %w", name, err)
			}
		}
	}
	if caps != nil {
		if err := unix.Setxattr(proc, xattrCaps, s.caps(caps), 0); err != nil {
			return fmt.Errorf("capabilities of %s: %w", name, err)
		}
	}
	if proc == "" {
		return nil
	}
	for _, attr := range []string{xattrACLAccess, xattrACLDefault} {
		acl := getxattr(proc, attr)
		if acl == nil {
			continue
		}
		shifted, err := s.acl(acl)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", attr, name, err)
		}
		if err := unix.Setxattr(proc, attr, shifted, 0); err != nil {
			return fmt.Errorf("%s of %s: %w", attr, name, err)
		}
	}
	return nil
}

// getxattr returns an attribute's value, nil when absent or unreadable.
func getxattr(path, attr string) []byte {
	buf := make([]byte, 256)
	for {
		n, err := unix.Getxattr(path, attr, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil
		}
		return buf[:n]
	}
}

// POSIX ACL xattr: a 4-byte version, then 8-byte entries {u16 tag, u16
// perm, u32 id}; only named user and group entries carry an id.
const (
	aclHeader = 4
	aclEntry  = 8
	aclUser   = 0x02
	aclGroup  = 0x08
)

func (s shifter) acl(v []byte) ([]byte, error) {
	if len(v) < aclHeader || (len(v)-aclHeader)%aclEntry != 0 {
		return nil, fmt.Errorf("malformed ACL of %d bytes", len(v))
	}
	out := append([]byte(nil), v...)
	for off := aclHeader; off < len(out); off += aclEntry {
		tag := binary.LittleEndian.Uint16(out[off:])
		if tag != aclUser && tag != aclGroup {
			continue
		}
		id, err := s.id(tag == aclUser, binary.LittleEndian.Uint32(out[off+4:]))
		if err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint32(out[off+4:], id)
	}
	return out, nil
}

// File capabilities: v3 (namespaced) is 24 bytes with the namespace root's
// host uid last. v2 (host-wide) has no id and is kept as is.
const (
	capRevisionMask = 0xff000000
	capRevision3    = 0x03000000
	capV3Size       = 24
)

func (s shifter) caps(v []byte) []byte {
	if len(v) != capV3Size || binary.LittleEndian.Uint32(v)&capRevisionMask != capRevision3 {
		return v
	}
	out := append([]byte(nil), v...)
	// The root id is a uid; an unmappable one keeps its value (it then
	// grants nothing in the container, which is the safe side).
	id, err := s.id(true, binary.LittleEndian.Uint32(out[20:]))
	if err == nil {
		binary.LittleEndian.PutUint32(out[20:], id)
	}
	return out
}
