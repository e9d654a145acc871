package overlay

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/idmap"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root, and CI=true forbids skipping")
	}
	t.Skip("needs root")
}

func mapOf(base, size int64) idmap.Set {
	return idmap.Set{
		{Isuid: true, Hostid: base, Nsid: 0, Maprange: size},
		{Isgid: true, Hostid: base, Nsid: 0, Maprange: size},
	}
}

func owner(t *testing.T, p string) (uint32, uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode & 0o7777
}

// layers makes lower (with a setuid file owned by root and a file owned
// by uid 1000), upper, work and a mount point under a fresh dir.
func layers(t *testing.T) (Layers, string) {
	t.Helper()
	dir := t.TempDir()
	l := Layers{Lower: filepath.Join(dir, "lower"), Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	target := filepath.Join(dir, "rootfs")
	for _, d := range []string{l.Lower, l.Upper, l.Work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l.Lower, "su"), []byte("image"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(l.Lower, "su"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Lower, "user"), []byte("u"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(l.Lower, "user"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountUnder(dir) })
	return l, target
}

func TestMountIdmappedLower(t *testing.T) {
	requireRoot(t)
	l, target := layers(t)
	set := mapOf(1_300_000, 65536)
	if err := Mount(l, target, set); err != nil {
		t.Fatal(err)
	}
	if ok, err := Mounted(target, l.Upper); !ok || err != nil {
		t.Fatalf("Mounted: %v %v", ok, err)
	}
	// The image shows through the map, unchanged on disk.
	if u, g, m := owner(t, filepath.Join(target, "su")); u != 1_300_000 || g != 1_300_000 || m != 0o4755 {
		t.Fatalf("su through the overlay: %d:%d %o", u, g, m)
	}
	if u, _, _ := owner(t, filepath.Join(target, "user")); u != 1_301_000 {
		t.Fatalf("user through the overlay: %d", u)
	}
	// Writes go to the upper layer; the image is never written.
	if err := os.WriteFile(filepath.Join(target, "su"), []byte("changed"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(target, "user")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(l.Lower, "su")); string(b) != "image" {
		t.Fatalf("lower written: %q", b)
	}
	if _, err := os.Stat(filepath.Join(l.Lower, "user")); err != nil {
		t.Fatalf("lower file removed: %v", err)
	}
	if u, _, _ := owner(t, filepath.Join(l.Lower, "su")); u != 0 {
		t.Fatalf("lower chowned: %d", u)
	}
	if b, _ := os.ReadFile(filepath.Join(l.Upper, "su")); string(b) != "changed" {
		t.Fatalf("upper: %q", b)
	}
	// A mount with another upper layer is not ours.
	if _, err := Mounted(target, l.Work); !errors.Is(err, ErrForeignMount) {
		t.Fatalf("wrong upper accepted: %v", err)
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	if ok, err := Mounted(target, l.Upper); ok || err != nil {
		t.Fatalf("still mounted: %v %v", ok, err)
	}
}

func TestMountedRefusesForeignMount(t *testing.T) {
	requireRoot(t)
	l, target := layers(t)
	if err := unix.Mount(l.Lower, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := Mounted(target, l.Upper); ok || !errors.Is(err, ErrForeignMount) {
		t.Fatalf("bind mount taken for the overlay: %v %v", ok, err)
	}
}

func TestRemoveTreeStopsAtMounts(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{tree + "/a/b", tree + "/mnt", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(tree, "a", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "a", "b"), 0o100); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(tree, "mnt"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountUnder(dir) })
	if err := os.WriteFile(filepath.Join(tree, "mnt", "inside"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTree(tree); !errors.Is(err, ErrCrossesMount) {
		t.Fatalf("removal crossed a mount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "mnt", "inside")); err != nil {
		t.Fatalf("file in the mount removed: %v", err)
	}
	// The mount point itself is refused as a tree too.
	if err := RemoveTree(filepath.Join(tree, "mnt")); !errors.Is(err, ErrCrossesMount) {
		t.Fatalf("removal of a mount point: %v", err)
	}
	if err := UnmountUnder(tree); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTree(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !os.IsNotExist(err) {
		t.Fatalf("tree still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("symlink followed: %v", err)
	}
}

// acl builds a POSIX ACL xattr value with a named user and group entry.
func acl(uid, gid uint32) []byte {
	entries := []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 6, 0xffffffff}, {aclUser, 4, uid}, {0x04, 4, 0xffffffff}, {aclGroup, 4, gid}, {0x10, 4, 0xffffffff}, {0x20, 0, 0xffffffff}}
	out := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		out = binary.LittleEndian.AppendUint16(out, e.tag)
		out = binary.LittleEndian.AppendUint16(out, e.perm)
		out = binary.LittleEndian.AppendUint32(out, e.id)
	}
	return out
}

func capsV3(rootid uint32) []byte {
	out := binary.LittleEndian.AppendUint32(nil, capRevision3|1) // effective
	out = binary.LittleEndian.AppendUint32(out, 1<<unix.CAP_NET_RAW)
	out = binary.LittleEndian.AppendUint32(out, 0)
	out = binary.LittleEndian.AppendUint32(out, 0)
	out = binary.LittleEndian.AppendUint32(out, 0)
	return binary.LittleEndian.AppendUint32(out, rootid)
}

func TestShift(t *testing.T) {
	requireRoot(t)
	const oldBase, newBase = 1_400_000, 1_500_000
	upper := filepath.Join(t.TempDir(), "upper")
	files := map[string]uint32{"root": oldBase, "dir/user": oldBase + 1000, "whiteout": 0}
	if err := os.MkdirAll(filepath.Join(upper, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for f, id := range files {
		p := filepath.Join(upper, f)
		if err := os.WriteFile(p, []byte(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, int(id), int(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{upper, filepath.Join(upper, "dir")} {
		if err := os.Lchown(d, oldBase, oldBase); err != nil {
			t.Fatal(err)
		}
	}
	// A hard link is one inode: shifted once, even with overlapping maps.
	if err := os.Link(filepath.Join(upper, "dir/user"), filepath.Join(upper, "hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(upper, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(upper, "link"), oldBase+5, oldBase+5); err != nil {
		t.Fatal(err)
	}
	su := filepath.Join(upper, "root")
	if err := unix.Chmod(su, 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(su, xattrCaps, capsV3(oldBase), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "dir"), xattrACLDefault, acl(oldBase+1000, oldBase+2000), 0); err != nil {
		t.Fatal(err)
	}

	// A map too small for uid 1000 changes nothing.
	if err := Shift(upper, mapOf(oldBase, 65536), mapOf(newBase, 500)); !errors.Is(err, ErrUnmappable) {
		t.Fatalf("shift to a too small map: %v", err)
	}
	if u, _, _ := owner(t, su); u != oldBase {
		t.Fatalf("refused shift changed %d", u)
	}

	if err := Shift(upper, mapOf(oldBase, 65536), mapOf(newBase, 65536)); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]uint32{"": newBase, "dir": newBase, "root": newBase, "dir/user": newBase + 1000, "whiteout": 0, "link": newBase + 5} {
		if u, g, _ := owner(t, filepath.Join(upper, p)); u != want || g != want {
			t.Errorf("%s: %d:%d, want %d", p, u, g, want)
		}
	}
	if _, _, m := owner(t, su); m != 0o4755 {
		t.Errorf("setuid bit lost: %o", m)
	}
	if l, _ := os.Readlink(filepath.Join(upper, "link")); l != "/etc/passwd" {
		t.Errorf("symlink: %q", l)
	}
	if u, _, _ := owner(t, "/etc/passwd"); u != 0 {
		t.Errorf("symlink target chowned: %d", u)
	}
	caps := getxattr(su, xattrCaps)
	if len(caps) != capV3Size || binary.LittleEndian.Uint32(caps[20:]) != newBase {
		t.Errorf("capabilities after the shift: %x", caps)
	}
	got := getxattr(filepath.Join(upper, "dir"), xattrACLDefault)
	if want := acl(newBase+1000, newBase+2000); string(got) != string(want) {
		t.Errorf("ACL after the shift: %x, want %x", got, want)
	}

	// Host ranges that overlap at an offset: the hard-linked file is
	// moved once (by 10), not once per link.
	if err := Shift(upper, mapOf(newBase, 65536), mapOf(newBase+10, 65536)); err != nil {
		t.Fatal(err)
	}
	if u, _, _ := owner(t, filepath.Join(upper, "hardlink")); u != newBase+1010 {
		t.Errorf("hard-linked file after an overlapping shift: %d, want %d", u, newBase+1010)
	}
	if err := Shift(upper, mapOf(newBase+10, 65536), mapOf(newBase, 65536)); err != nil {
		t.Fatal(err)
	}

	// Back to host ids as they are (a privileged container).
	if err := Shift(upper, mapOf(newBase, 65536), nil); err != nil {
		t.Fatal(err)
	}
	if u, _, _ := owner(t, filepath.Join(upper, "dir/user")); u != 1000 {
		t.Errorf("to an empty map: %d", u)
	}
}

func TestMountinfoParsing(t *testing.T) {
	if got := unescape(`/a\040b\134c`); got != `/a b\c` {
		t.Errorf("unescape: %q", got)
	}
	opts := `rw,lowerdir+=/x,upperdir=/p\,q/upper,workdir=/w`
	if !hasOption(opts, "upperdir", "/p,q/upper") || hasOption(opts, "upperdir", "/p") || !hasOption(opts, "workdir", "/w") {
		t.Error("hasOption")
	}
}
