package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentDuplicateImport: the same bytes uploaded several times at
// once all succeed with one fingerprint and leave exactly that image's
// files, no staging and no half-committed image.
func TestConcurrentDuplicateImport(t *testing.T) {
	s := openStore(t)
	for round := range 40 {
		body := tarball(t, true, dir("rootfs/", 0o755), reg("rootfs/round", fmt.Sprint(round), 0o644))
		const n = 4
		var wg sync.WaitGroup
		start := make(chan struct{})
		fps, errs := make([]string, n), make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				imp, err := s.ImportUnified(bytes.NewReader(body), nil, nil)
				if errs[i] = err; err == nil {
					fps[i] = imp.Fingerprint
				}
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil || fps[i] != fps[0] {
				t.Fatalf("round %d: import %d: %q %v (first %q)", round, i, fps[i], errs[i], fps[0])
			}
		}
		for _, f := range []string{s.File(fps[0]), s.Rootfs(fps[0]) + "/round"} {
			if _, err := os.Stat(f); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 80 || slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name()[0] == '.' }) {
		t.Fatalf("store holds %d entries, want 40 images of two files each", len(entries))
	}
}

// TestRefusedRegisterLeavesNothing: when recording a new image fails, the
// files it put in place go again; when the files were there before (the
// same bytes in another project), they stay.
func TestRefusedRegisterLeavesNothing(t *testing.T) {
	s := openStore(t)
	body := tarball(t, true, legitRootfs("rootfs/")...)
	refuse := errors.New("refused by the database")
	no := func(*Imported) error { return refuse }
	if _, err := s.ImportUnified(bytes.NewReader(body), nil, no); !errors.Is(err, refuse) {
		t.Fatalf("import with a failing register: %v", err)
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 0 {
		t.Fatalf("refused record left %v", entries)
	}
	meta, rootfs := tarball(t, true), tarball(t, false, legitRootfs("")...)
	if _, err := s.ImportSplit(bytes.NewReader(meta), bytes.NewReader(rootfs), nil, no); !errors.Is(err, refuse) {
		t.Fatalf("split import with a failing register: %v", err)
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 0 {
		t.Fatalf("refused split record left %v", entries)
	}

	imp, err := s.ImportUnified(bytes.NewReader(body), nil, func(*Imported) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportUnified(bytes.NewReader(body), nil, no); !errors.Is(err, refuse) {
		t.Fatalf("second import with a failing register: %v", err)
	}
	if !s.Has(imp.Fingerprint) {
		t.Fatal("a refused record of bytes already present removed the first import's files")
	}
	checkLegit(t, s.Rootfs(imp.Fingerprint))
}

// TestRemoveUnusedVersusImport: one "project" keeps importing and
// recording an image while another imports, records, deletes its record
// and removes the files unless a record is left. A recorded image always
// has its files: the removal cannot slip between a commit that found the
// files present and the recording.
func TestRemoveUnusedVersusImport(t *testing.T) {
	s := openStore(t)
	body := tarball(t, true, legitRootfs("rootfs/")...)
	var mu sync.Mutex
	records := map[string]bool{}
	record := func(who string) Register {
		return func(*Imported) error {
			mu.Lock()
			defer mu.Unlock()
			records[who] = true
			return nil
		}
	}
	forget := func(who string) {
		mu.Lock()
		defer mu.Unlock()
		delete(records, who)
	}
	used := func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(records) > 0, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for _, who := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				imp, err := s.ImportUnified(bytes.NewReader(body), nil, record(who))
				if err != nil {
					errs <- err
					return
				}
				// Only this goroutine removes its own record: the files
				// must be there until it does.
				if !s.Has(imp.Fingerprint) {
					errs <- fmt.Errorf("%s: recorded image %s has no files", who, imp.Fingerprint)
					return
				}
				forget(who)
				if err := s.RemoveUnused(imp.Fingerprint, used); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 0 {
		t.Fatalf("unrecorded image left %v", entries)
	}
}

// cutReader returns data and then an unexpected end, as a multipart part
// cut before its closing boundary does.
type cutReader struct{ r io.Reader }

func (c cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// TestCutUploadRefused: a body that ends early is the client's error
// (ErrInvalid, a 400), not the daemon's, and leaves nothing.
func TestCutUploadRefused(t *testing.T) {
	s := openStore(t)
	meta, rootfs := tarball(t, true), tarball(t, false, legitRootfs("")...)
	_, err := s.ImportSplit(bytes.NewReader(meta), cutReader{bytes.NewReader(rootfs[:len(rootfs)/2])}, nil, nil)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "ended before it was complete") {
		t.Fatalf("cut split upload: %v", err)
	}
	_, err = s.ImportUnified(cutReader{bytes.NewReader(tarball(t, true, legitRootfs("rootfs/")...))}, nil, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("cut unified upload: %v", err)
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 0 {
		t.Fatalf("cut uploads left %v", entries)
	}
}
