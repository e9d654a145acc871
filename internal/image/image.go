// Package image stores LXD images: it checks and unpacks unified (one
// tarball holding metadata.yaml and rootfs/) and split (metadata tarball +
// rootfs tarball) uploads into a directory of unpacked root filesystems,
// keyed by the sha256 fingerprint of the uploaded bytes.
//
// An upload is unpacked into a private staging directory and moved into
// place only once it is complete and valid: a corrupt or truncated archive,
// an entry escaping the rootfs (a ".." component, an absolute name, a
// hard link to anything but a regular file unpacked before it, an entry
// reached through or replacing a symlink) or a missing metadata.yaml is
// refused and leaves nothing behind. The unpacking never follows a
// symlink: see extractor. Device nodes and FIFOs are skipped.
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

// ErrInvalid wraps every reason an upload is refused.
var ErrInvalid = errors.New("invalid image")

// Metadata is metadata.yaml.
type Metadata struct {
	Architecture string            `yaml:"architecture"`
	CreationDate int64             `yaml:"creation_date"`
	ExpiryDate   int64             `yaml:"expiry_date"`
	Properties   map[string]string `yaml:"properties"`
}

// Store is the image directory.
type Store struct {
	Dir string
	// mu serialises every change to which images are present: a commit
	// together with the recording of the image (Register), and a removal
	// together with the check that nothing records it any more. Without
	// it a removal could run between a commit that found the files
	// present and the recording, leaving a record without files.
	mu sync.Mutex
}

// Register records an imported image (the daemon's database row). It runs
// with the store locked, once the image's files are in place; when it
// fails, the files this import put in place are removed again.
type Register func(*Imported) error

// Open creates dir (0700: unpacked images hold setuid binaries owned by
// host root) and removes what an interrupted import left behind.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Store{Dir: dir}
	stale, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, p := range stale {
		os.RemoveAll(p)
	}
	return s, nil
}

// Rootfs is the unpacked root filesystem of an image.
func (s *Store) Rootfs(fp string) string { return filepath.Join(s.Dir, fp+".rootfs") }

// File is the image as uploaded (unified tarball, or the metadata part).
func (s *Store) File(fp string) string { return filepath.Join(s.Dir, fp) }

// Has reports whether the image files are present.
func (s *Store) Has(fp string) bool {
	_, err := os.Stat(s.Rootfs(fp))
	return err == nil
}

// Use runs f with the store locked, after checking that fp's files are
// present: no removal runs meanwhile, so whatever f records as using the
// image (an instance made from it) is seen by the removal's check.
func (s *Store) Use(fp string, f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.Has(fp) {
		return fmt.Errorf("image %s has no files on disk", fp)
	}
	return f()
}

// RemoveUnused deletes an image's files unless used reports that
// something still needs them; used runs with the store locked, so no
// import of the same image can record it meanwhile.
func (s *Store) RemoveUnused(fp string, used func() (bool, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	inUse, err := used()
	if err != nil || inUse {
		return err
	}
	return s.remove(fp)
}

// remove deletes an image's files; the caller holds mu.
func (s *Store) remove(fp string) error {
	return errors.Join(os.RemoveAll(s.Rootfs(fp)), os.RemoveAll(s.File(fp)), os.RemoveAll(s.File(fp)+".rootfs.tar"))
}

// Prune removes image files that keep returns false for.
func (s *Store) Prune(keep func(fp string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, _ := os.ReadDir(s.Dir)
	for _, e := range entries {
		fp, _, _ := strings.Cut(e.Name(), ".")
		if len(fp) == 64 && !keep(fp) {
			os.RemoveAll(filepath.Join(s.Dir, e.Name()))
		}
	}
}

// Imported is the result of an import.
type Imported struct {
	Fingerprint string
	Size        int64
	Metadata    Metadata
}

// Progress receives the number of bytes received so far.
type Progress func(n int64)

// ImportUnified reads a unified tarball from r and records it with
// register (nil: not recorded).
func (s *Store) ImportUnified(r io.Reader, progress Progress, register Register) (*Imported, error) {
	stage, err := os.MkdirTemp(s.Dir, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	file := filepath.Join(stage, "image")
	fp, size, err := saveHashed(file, []io.Reader{r}, progress)
	if err != nil {
		return nil, err
	}
	meta, err := unpack(file, stage, true)
	if err != nil {
		return nil, err
	}
	return s.commit(stage, fp, size, meta, map[string]string{"image": fp}, register)
}

// ImportSplit reads a metadata tarball and a rootfs tarball. The
// fingerprint is the sha256 of the two concatenated, as LXD computes it.
// register is as for ImportUnified.
func (s *Store) ImportSplit(metadata, rootfs io.Reader, progress Progress, register Register) (*Imported, error) {
	stage, err := os.MkdirTemp(s.Dir, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	mfile, rfile := filepath.Join(stage, "meta"), filepath.Join(stage, "rootfs.tar")
	h := sha256.New()
	n1, err := saveTo(mfile, metadata, h, progress, 0)
	if err != nil {
		return nil, err
	}
	n2, err := saveTo(rfile, rootfs, h, progress, n1)
	if err != nil {
		return nil, err
	}
	fp := hex.EncodeToString(h.Sum(nil))
	meta, err := unpack(mfile, stage, false)
	if err != nil {
		return nil, err
	}
	if err := unpackRootfsOnly(rfile, filepath.Join(stage, "rootfs")); err != nil {
		return nil, err
	}
	return s.commit(stage, fp, n1+n2, meta, map[string]string{"meta": fp, "rootfs.tar": fp + ".rootfs.tar"}, register)
}

// commit moves the staged files into place, unless the same bytes are
// already there (another project's upload, a retry, or a concurrent
// upload of the same image that committed first), then records the
// image. It is all or nothing: a failed move or a refused record leaves
// none of the files this call placed.
func (s *Store) commit(stage, fp string, size int64, meta *Metadata, files map[string]string, register Register) (*Imported, error) {
	imp := &Imported{Fingerprint: fp, Size: size, Metadata: *meta}
	s.mu.Lock()
	defer s.mu.Unlock()
	placed := false
	if !s.Has(fp) {
		placed = true
		if err := s.place(stage, fp, files); err != nil {
			return nil, errors.Join(err, s.remove(fp))
		}
	}
	if register != nil {
		if err := register(imp); err != nil {
			if placed {
				err = errors.Join(err, s.remove(fp))
			}
			return nil, err
		}
	}
	return imp, nil
}

// place renames the staged files to their names in the store; the
// caller holds mu and has found no rootfs for fp, so whatever else
// carries fp's name is the debris of an interrupted commit, replaced.
func (s *Store) place(stage, fp string, files map[string]string) error {
	for from, to := range files {
		if err := os.Rename(filepath.Join(stage, from), filepath.Join(s.Dir, to)); err != nil {
			return err
		}
	}
	// The rootfs goes last: its presence is what Has checks.
	return os.Rename(filepath.Join(stage, "rootfs"), s.Rootfs(fp))
}

func saveHashed(file string, rs []io.Reader, progress Progress) (string, int64, error) {
	h := sha256.New()
	n, err := saveTo(file, io.MultiReader(rs...), h, progress, 0)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

type progressWriter struct {
	n    int64
	last time.Time
	fn   Progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.fn != nil && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.fn(p.n)
	}
	return len(b), nil
}

func saveTo(file string, r io.Reader, h io.Writer, progress Progress, offset int64) (int64, error) {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	pw := &progressWriter{n: offset, fn: progress}
	n, err := io.Copy(io.MultiWriter(f, h, pw), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// The body (or a multipart upload's part) ended before its end:
		// the upload is incomplete, which is the client's doing.
		return n, fmt.Errorf("%w: the upload ended before it was complete (%v)", ErrInvalid, err)
	}
	if err != nil {
		return n, fmt.Errorf("receiving image: %w", err)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: empty upload", ErrInvalid)
	}
	return n, nil
}

// decompress detects gzip, bzip2 or a plain tar by magic bytes.
func decompress(f *os.File) (io.Reader, error) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: corrupt gzip data: %v", ErrInvalid, err)
		}
		return gz, nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, fmt.Errorf("%w: xz-compressed images are not supported: use gzip, bzip2 or an uncompressed tar", ErrInvalid)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return nil, fmt.Errorf("%w: zstd-compressed images are not supported: use gzip, bzip2 or an uncompressed tar", ErrInvalid)
	case bytes.HasPrefix(magic, []byte("hsqs")):
		return nil, fmt.Errorf("%w: squashfs root filesystems are not supported: upload a tarball", ErrInvalid)
	}
	return br, nil
}

const maxMetadata = 1 << 20

// unpack reads an image tarball: metadata.yaml is parsed, rootfs/ (when
// withRootfs) is unpacked to stage/rootfs.
func unpack(file, stage string, withRootfs bool) (*Metadata, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return nil, err
	}
	x := newExtractor(filepath.Join(stage, "rootfs"), "rootfs/")
	defer x.close()
	var meta *Metadata
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: corrupt or truncated archive: %v", ErrInvalid, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch {
		case name == "metadata.yaml":
			if hdr.Typeflag != tar.TypeReg {
				return nil, fmt.Errorf("%w: metadata.yaml is not a regular file", ErrInvalid)
			}
			buf, err := io.ReadAll(io.LimitReader(tr, maxMetadata+1))
			if err != nil {
				return nil, fmt.Errorf("%w: corrupt or truncated archive: %v", ErrInvalid, err)
			}
			if len(buf) > maxMetadata {
				return nil, fmt.Errorf("%w: metadata.yaml is larger than 1MiB", ErrInvalid)
			}
			meta = &Metadata{}
			if err := yaml.Unmarshal(buf, meta); err != nil {
				return nil, fmt.Errorf("%w: metadata.yaml: %v", ErrInvalid, err)
			}
		case withRootfs && (name == "rootfs" || strings.HasPrefix(name, "rootfs/")):
			if err := x.add(strings.TrimPrefix(strings.TrimPrefix(name, "rootfs"), "/"), hdr, tr); err != nil {
				return nil, err
			}
		default:
			// templates/ and anything else: not used by Moat, so never
			// written anywhere (this is also all a split upload's
			// metadata tarball gets: withRootfs is false there).
		}
	}
	// A truncated gzip stream can end exactly at a tar block boundary;
	// draining the decompressor catches it.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, fmt.Errorf("%w: corrupt or truncated archive: %v", ErrInvalid, err)
	}
	if meta == nil {
		return nil, fmt.Errorf("%w: metadata.yaml is missing", ErrInvalid)
	}
	if meta.Architecture == "" {
		return nil, fmt.Errorf("%w: metadata.yaml has no architecture", ErrInvalid)
	}
	if withRootfs && !x.any {
		return nil, fmt.Errorf("%w: the tarball has no rootfs/ directory", ErrInvalid)
	}
	return meta, nil
}

func unpackRootfsOnly(file, dst string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return err
	}
	x := newExtractor(dst, "")
	defer x.close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: corrupt or truncated rootfs archive: %v", ErrInvalid, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if err := x.add(name, hdr, tr); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("%w: corrupt or truncated rootfs archive: %v", ErrInvalid, err)
	}
	if !x.any {
		return fmt.Errorf("%w: the rootfs archive is empty", ErrInvalid)
	}
	return nil
}

// cleanName refuses absolute names and ".." components; "./x" is "x".
func cleanName(n string) (string, error) {
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("%w: absolute path %q in archive", ErrInvalid, n)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: path %q escapes the image", ErrInvalid, n)
		}
		if strings.ContainsRune(part, 0) {
			return "", fmt.Errorf("%w: NUL byte in path", ErrInvalid)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// extractor unpacks archive entries beneath root without ever following a
// symlink. The kernel resolves every path: openat2 from a descriptor of
// root with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS refuses any component that
// is a symlink (the archive's own or any other) and any escape, so the
// result is a directory inside the staging tree or an error. Entries are
// then created with *at calls relative to that parent descriptor, and
// their owner and mode are set through a descriptor of the entry itself
// (or with AT_SYMLINK_NOFOLLOW for symlinks), never by a path string.
type extractor struct {
	root string
	// prefix is how the archive names root: "rootfs/" in a unified
	// tarball (hard link targets carry it), "" in a split rootfs tarball.
	prefix string
	rootFD int
	any    bool
}

const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

func newExtractor(root, prefix string) *extractor {
	return &extractor{root: root, prefix: prefix, rootFD: -1}
}

func (x *extractor) close() {
	if x.rootFD >= 0 {
		unix.Close(x.rootFD)
		x.rootFD = -1
	}
}

// name is the entry as the archive spells it, for error messages.
func (x *extractor) name(rel string) string {
	if rel == "" {
		return strings.TrimSuffix(x.prefix, "/")
	}
	return x.prefix + rel
}

// openat resolves rel beneath dirfd with no symlink anywhere in it.
func openat(dirfd int, rel string, flags uint64, mode uint64) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Mode: mode, Resolve: resolveBeneath})
		if err != unix.EINTR && err != unix.EAGAIN {
			return fd, err
		}
	}
}

// refused turns a resolution failure into the reason the entry is refused;
// other errors (ENOSPC, EIO) are the daemon's problem and stay as they are.
func (x *extractor) refused(rel string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %q is a symlink or is reached through one", ErrInvalid, x.name(rel))
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: a parent of %q is not a directory", ErrInvalid, x.name(rel))
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %q escapes the image", ErrInvalid, x.name(rel))
	case errors.Is(err, unix.ENAMETOOLONG):
		return fmt.Errorf("%w: %q or its link target is longer than a file name or path may be", ErrInvalid, x.name(rel))
	}
	return fmt.Errorf("unpacking %q: %w", x.name(rel), err)
}

// parent returns an O_PATH descriptor of rel's parent directory, creating
// missing directories (archives need not list every parent) one component
// at a time, each created and then opened relative to the one before.
func (x *extractor) parent(rel string) (int, error) {
	dir := path.Dir(rel)
	fd, err := openat(x.rootFD, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	cur, err := openat(x.rootFD, ".", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(dir, "/") {
		if err := unix.Mkdirat(cur, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return -1, err
		}
		next, err := openat(cur, c, unix.O_PATH|unix.O_DIRECTORY, 0)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// setAttrs gives an entry its owner, then its mode (chown clears setuid).
func setAttrs(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	return unix.Fchmod(fd, uint32(hdr.Mode)&0o7777)
}

func (x *extractor) start() error {
	if x.any {
		return nil
	}
	if err := os.Mkdir(x.root, 0o755); err != nil {
		return err
	}
	fd, err := unix.Open(x.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	x.rootFD, x.any = fd, true
	return nil
}

// add unpacks one entry; rel is its cleaned name relative to root.
func (x *extractor) add(rel string, hdr *tar.Header, r io.Reader) error {
	if err := x.start(); err != nil {
		return err
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > idMax || hdr.Gid > idMax {
		return fmt.Errorf("%w: %q has an invalid owner %d:%d", ErrInvalid, x.name(rel), hdr.Uid, hdr.Gid)
	}
	if isSparse(hdr) {
		return fmt.Errorf("%w: %q is a sparse file, which an image may not hold", ErrInvalid, x.name(rel))
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		// Skipped: a container's /dev comes from liblxc's autodev, and an
		// upload does not get to plant device nodes (usable by host root
		// on the daemon's side) in the image store.
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeSymlink, tar.TypeLink:
	default:
		// Extended headers are consumed by archive/tar; anything else
		// (GNU volume labels, unknown types) carries nothing to unpack.
		return nil
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: %q is not a directory", ErrInvalid, x.name(rel))
		}
		return setAttrs(x.rootFD, hdr)
	}
	pfd, err := x.parent(rel)
	if err != nil {
		return x.refused(rel, err)
	}
	defer unix.Close(pfd)
	base := path.Base(rel)
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	switch {
	case !exists:
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: %q replaces a directory", ErrInvalid, x.name(rel))
		}
	case st.Mode&unix.S_IFMT == unix.S_IFLNK && hdr.Typeflag != tar.TypeSymlink:
		// Replacing it would be harmless, but an archive that does this
		// is built to make an extractor write through the link.
		return fmt.Errorf("%w: %q would replace the symlink unpacked before it", ErrInvalid, x.name(rel))
	case hdr.Typeflag == tar.TypeDir:
		return fmt.Errorf("%w: directory %q replaces a file", ErrInvalid, x.name(rel))
	default:
		// A later entry for the same file wins, as with tar.
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return x.refused(rel, err)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return x.refused(rel, err)
			}
		}
		fd, err := openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return x.refused(rel, err)
		}
		defer unix.Close(fd)
		return setAttrs(fd, hdr)
	case tar.TypeReg, tar.TypeRegA:
		fd, err := openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return x.refused(rel, err)
		}
		f := os.NewFile(uintptr(fd), x.name(rel))
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return fmt.Errorf("%w: corrupt or truncated archive: %v", ErrInvalid, err)
		}
		err = setAttrs(fd, hdr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		if strings.ContainsRune(hdr.Linkname, 0) || hdr.Linkname == "" {
			return fmt.Errorf("%w: bad symlink target for %q", ErrInvalid, x.name(rel))
		}
		// Absolute and relative targets are fine in a rootfs: they resolve
		// inside the container, and nothing here ever follows them.
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return x.refused(rel, err)
		}
		return unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	default: // tar.TypeLink
		return x.link(rel, hdr.Linkname, pfd, base)
	}
}

// isSparse reports a GNU sparse file, in PAX form or the old one (its own
// Typeflag): archive/tar expands its holes into zeros, and its declared
// size is unbounded, so a 2 KB upload could have the daemon write
// terabytes.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse { // the old GNU form
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// link makes rel a hard link to an already unpacked regular file of the
// same tree, resolved like every other path (no symlink in any component,
// not a symlink itself) and linked from its descriptor.
func (x *extractor) link(rel, linkname string, pfd int, base string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: hard link %q to %q: %s", ErrInvalid, x.name(rel), linkname, why)
	}
	ln, err := cleanName(linkname)
	if err != nil {
		return bad("the target is outside the image")
	}
	target, ok := strings.CutPrefix(ln, x.prefix)
	if !ok || target == "" {
		return bad("the target is outside the image's root filesystem")
	}
	if target == rel {
		return bad("the entry links to itself")
	}
	tfd, err := openat(x.rootFD, target, unix.O_PATH, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return bad("no such file was unpacked before it")
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EXDEV):
		return bad("the target is a symlink or is reached through one")
	case errors.Is(err, unix.ENAMETOOLONG):
		return bad("the target's name is too long")
	case err != nil:
		return fmt.Errorf("unpacking %q: %w", x.name(rel), err)
	}
	defer unix.Close(tfd)
	var st unix.Stat_t
	if err := unix.Fstat(tfd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return bad("the target is not a regular file")
	}
	if err := unix.Linkat(tfd, "", pfd, base, unix.AT_EMPTY_PATH); err != nil {
		return x.refused(rel, err)
	}
	return nil
}

// idMax is the largest valid uid/gid ((uid_t)-1 means "no change").
const idMax = 1<<32 - 2
