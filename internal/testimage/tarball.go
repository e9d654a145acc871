package testimage

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// Description is the image's properties.description.
const Description = "BusyBox test image"

// WriteUnified writes an LXD unified image (gzip'd tar of metadata.yaml and
// rootfs/) of the rootfs at dir to w and returns its fingerprint, the
// sha256 of the bytes written. Entries are in lexical order with fixed
// timestamps so the same rootfs and created time give the same fingerprint.
func WriteUnified(w io.Writer, dir string, created time.Time) (string, error) {
	arch, err := lxdArch(runtime.GOARCH)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	gz := gzip.NewWriter(io.MultiWriter(w, h))
	tw := tar.NewWriter(gz)
	created = created.UTC().Truncate(time.Second)

	meta := fmt.Sprintf("architecture: %s\ncreation_date: %d\nproperties:\n  os: busybox\n  architecture: %s\n  description: %q\ntemplates: {}\n",
		arch, created.Unix(), arch, Description)
	if err := tw.WriteHeader(&tar.Header{Name: "metadata.yaml", Mode: 0o644, Size: int64(len(meta)), ModTime: created, Typeflag: tar.TypeReg}); err != nil {
		return "", err
	}
	if _, err := io.WriteString(tw, meta); err != nil {
		return "", err
	}
	if err := addTree(tw, dir, created); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func addTree(tw *tar.Writer, dir string, mtime time.Time) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join("rootfs", rel))
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// Ownership is numeric only: names would depend on the build host.
		hdr.Uname, hdr.Gname = "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
}

// lxdArch names a Go architecture the way LXD image metadata does.
func lxdArch(goarch string) (string, error) {
	names := map[string]string{
		"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "arm": "armv7l",
		"ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
	}
	if a, ok := names[goarch]; ok {
		return a, nil
	}
	return "", fmt.Errorf("no LXD architecture name for %s", goarch)
}

// BuildImage builds a rootfs in a temporary directory and writes the
// unified tarball to path, returning the fingerprint.
func BuildImage(path string) (string, error) {
	tmp, err := os.MkdirTemp("", "moat-testimage-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := BuildRootfs(rootfs); err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	fp, err := WriteUnified(f, rootfs, time.Now())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", err
	}
	return fp, nil
}
