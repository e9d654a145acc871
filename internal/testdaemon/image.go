package testdaemon

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moat/moat/internal/testimage"
)

var (
	imageOnce sync.Once
	imagePath string
	imageFP   string
	imageErr  error
)

// BusyboxImage builds the busybox unified image tarball once per test
// binary and returns its path and fingerprint. Without busybox-static the
// test fails under CI=true and is skipped otherwise.
func BusyboxImage(t testing.TB) (string, string) {
	t.Helper()
	if _, err := os.Stat(testimage.Busybox); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("busybox-static is required (CI=true forbids skipping)")
		}
		t.Skip("busybox-static is not installed")
	}
	imageOnce.Do(func() {
		dir, err := processTempDir("moat-img.pid")
		if err != nil {
			imageErr = err
			return
		}
		imagePath = filepath.Join(dir, "busybox.tar.gz")
		imageFP, imageErr = testimage.BuildImage(imagePath)
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imagePath, imageFP
}
