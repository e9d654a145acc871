// Package image stores LXD images: it checks and unpacks unified (one
// tarball holding metadata.yaml and rootfs/) and split (metadata tarball +
// rootfs tarball) uploads into a directory of unpacked root filesystems,
// keyed by the sha256 fingerprint of the uploaded bytes.
//
// An upload is unpacked into a private staging directory and moved into
// place only once it is complete and valid: a corrupt or truncated archive,
// an entry escaping the rootfs (a ".." component, an absolute name, a
// hard link out of the tree, an entry reached through a symlink) or a
// missing metadata.yaml is refused and leaves nothing behind.
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
}

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

// Remove deletes an image's files.
func (s *Store) Remove(fp string) error {
	return errors.Join(os.RemoveAll(s.Rootfs(fp)), os.RemoveAll(s.File(fp)), os.RemoveAll(s.File(fp)+".rootfs.tar"))
}

// Prune removes image files that keep returns false for.
func (s *Store) Prune(keep func(fp string) bool) {
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

// ImportUnified reads a unified tarball from r.
func (s *Store) ImportUnified(r io.Reader, progress Progress) (*Imported, error) {
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
	return s.commit(stage, fp, size, meta, map[string]string{"image": fp})
}

// ImportSplit reads a metadata tarball and a rootfs tarball. The
// fingerprint is the sha256 of the two concatenated, as LXD computes it.
func (s *Store) ImportSplit(metadata, rootfs io.Reader, progress Progress) (*Imported, error) {
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
	return s.commit(stage, fp, n1+n2, meta, map[string]string{"meta": fp, "rootfs.tar": fp + ".rootfs.tar"})
}

func (s *Store) commit(stage, fp string, size int64, meta *Metadata, files map[string]string) (*Imported, error) {
	if s.Has(fp) {
		// Same bytes already unpacked (another project, or a retry).
		return &Imported{Fingerprint: fp, Size: size, Metadata: *meta}, nil
	}
	for from, to := range files {
		if err := os.Rename(filepath.Join(stage, from), filepath.Join(s.Dir, to)); err != nil {
			return nil, err
		}
	}
	// The rootfs goes last: its presence is what Has checks.
	if err := os.Rename(filepath.Join(stage, "rootfs"), s.Rootfs(fp)); err != nil {
		return nil, err
	}
	return &Imported{Fingerprint: fp, Size: size, Metadata: *meta}, nil
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
	x := newExtractor(filepath.Join(stage, "rootfs"))
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
			// templates/ and anything else: not used by Moat.
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
	x := newExtractor(dst)
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

// extractor unpacks entries below root. It never writes through a
// symlink: an entry whose parent is a symlink unpacked earlier is refused,
// and files are created with O_NOFOLLOW|O_EXCL after removing whatever
// non-directory was there.
type extractor struct {
	root     string
	symlinks map[string]bool
	any      bool
	dirModes map[string]*tar.Header
}

func newExtractor(root string) *extractor {
	return &extractor{root: root, symlinks: map[string]bool{}, dirModes: map[string]*tar.Header{}}
}

func (x *extractor) add(rel string, hdr *tar.Header, r io.Reader) error {
	if !x.any {
		if err := os.Mkdir(x.root, 0o755); err != nil {
			return err
		}
		x.any = true
	}
	if rel == "" {
		if hdr.Typeflag == tar.TypeDir {
			return os.Chmod(x.root, os.FileMode(hdr.Mode)&os.ModePerm)
		}
		return nil
	}
	for p := path.Dir(rel); p != "."; p = path.Dir(p) {
		if x.symlinks[p] {
			return fmt.Errorf("%w: %q is reached through the symlink %q", ErrInvalid, "rootfs/"+rel, "rootfs/"+p)
		}
	}
	target := filepath.Join(x.root, rel)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeDir {
		if fi, err := os.Lstat(target); err == nil {
			if fi.IsDir() {
				return fmt.Errorf("%w: %q replaces a directory", ErrInvalid, "rootfs/"+rel)
			}
			os.Remove(target)
		}
	}
	delete(x.symlinks, rel)
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w: corrupt or truncated archive: %v", ErrInvalid, err)
		}
	case tar.TypeSymlink:
		if strings.ContainsRune(hdr.Linkname, 0) || hdr.Linkname == "" {
			return fmt.Errorf("%w: bad symlink target for %q", ErrInvalid, rel)
		}
		// Absolute and relative targets are fine in a rootfs: they resolve
		// inside the container. Nothing is ever written through them.
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
		x.symlinks[rel] = true
	case tar.TypeLink:
		ln, err := cleanName(hdr.Linkname)
		if err != nil {
			return err
		}
		ln = strings.TrimPrefix(strings.TrimPrefix(ln, "rootfs"), "/")
		if ln == "" || x.symlinks[ln] {
			return fmt.Errorf("%w: hard link %q points outside the rootfs or at a symlink", ErrInvalid, rel)
		}
		for p := path.Dir(ln); p != "."; p = path.Dir(p) {
			if x.symlinks[p] {
				return fmt.Errorf("%w: hard link %q is reached through a symlink", ErrInvalid, rel)
			}
		}
		src := filepath.Join(x.root, ln)
		if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: hard link %q points at a missing or non-regular file", ErrInvalid, rel)
		}
		return os.Link(src, target)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		// Device nodes come from the container's autodev /dev; images
		// do not get to plant them.
		return nil
	default:
		return nil
	}
	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// After chown, which clears setuid bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, target, mode, 0); err != nil {
			return err
		}
	}
	return nil
}
