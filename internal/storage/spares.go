package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Warm pool of pre-copied image root filesystems ("spares").
//
// Copying an image rootfs costs one inode creation per file (the busybox
// image: ~290, 22 ms on a quiet disk, 140-300 ms under load). A spare is
// such a copy made ahead of time in the background, so that a create from
// the image is one rename(2) of the spare into the container's place.
//
// Layout: POOL/spares (0700 root) holds staging dirs (.tmp-*) and one dir
// per image fingerprint (0700 root), which holds complete spares (mode
// 0100 root, with rootfs/ inside, exactly as a container dir before its
// owner is set). A spare is copied into a staging dir and renamed into
// POOL/spares/FP only once complete, so a half-copied tree is never seen
// there. A spare is taken by renaming it into POOL/containers: it then
// belongs to that container alone; nothing is shared between containers.
//
// Bounds: at most MaxSparesPerImage spares per image, only for images used
// by a create (or imported) within SpareTTL; spares of images unused for
// longer are removed. One background goroutine makes every copy, so there
// is never more than one spare copy running, and a refill is single-flight
// per image. Spares are removed with their image (Forget) and all of them
// at pool open: a spare's file data was never fsync'd, so one written
// before a crash is not trusted.

const (
	// MaxSparesPerImage is how many spares are kept ready per image.
	MaxSparesPerImage = 1
	// SpareTTL is how long after its last use (create or import) an
	// image keeps spares.
	SpareTTL = time.Hour
)

func (p *Dir) spares() string { return filepath.Join(p.Path, "spares") }

// SpareDir is the dir holding the complete spares of an image.
func (p *Dir) SpareDir(fp string) string { return filepath.Join(p.spares(), fp) }

// openSpares creates POOL/spares and empties it (see above).
func (p *Dir) openSpares() error {
	d := p.spares()
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(d, 0o700); err != nil {
		return err
	}
	if err := os.Chown(d, 0, 0); err != nil {
		return err
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		return err
	}
	for _, e := range entries {
		_ = removeAll(filepath.Join(d, e.Name()))
	}
	return nil
}

// readySpares lists the complete spares of an image.
func (p *Dir) readySpares(fp string) []string {
	entries, _ := os.ReadDir(p.SpareDir(fp))
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "s-") {
			out = append(out, filepath.Join(p.SpareDir(fp), e.Name()))
		}
	}
	return out
}

// claimSpare moves a complete spare into place as container name's dir,
// owned by uid:gid with mode 0100. The owner is set while the spare is
// still in the root-only spares dir.
func (p *Dir) claimSpare(spare, name string, uid, gid int) error {
	if err := os.Lchown(spare, uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(spare, 0o100); err != nil {
		return err
	}
	// NOREPLACE: rename(2) would replace an empty dir at the destination.
	return unix.Renameat2(unix.AT_FDCWD, spare, unix.AT_FDCWD, p.ContainerDir(name), unix.RENAME_NOREPLACE)
}

// detachSpares renames the spares dir of an image to a staging name (so
// nothing can be taken from it any more) and returns that name, "" if
// there was none. The caller removes it (without holding Spares.mu).
func (p *Dir) detachSpares(fp string) (string, error) {
	d := p.SpareDir(fp)
	if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	tmp, err := os.MkdirTemp(p.spares(), ".tmp-del-")
	if err != nil {
		return "", err
	}
	if err := os.Rename(d, filepath.Join(tmp, "s")); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

var errDropped = errors.New("spare copy dropped")

// Spares keeps the warm pool of a Dir filled.
type Spares struct {
	pool *Dir
	src  func(fp string) string
	logf func(msg string, args ...any)

	mu      sync.Mutex
	used    map[string]time.Time // fingerprint -> last create or import
	gen     map[string]uint64    // bumped by Forget: a running copy is dropped
	pending map[string]bool      // images to check for a refill
	busy    string               // image being copied, "" if none
	busyGen uint64
	busyEnd chan struct{} // closed when the copy of busy ends
	kick    chan struct{}
	stop    chan struct{}
	stopped atomic.Bool
	done    chan struct{}
}

// StartSpares starts the refill goroutine of the pool's spares; src gives
// the image rootfs of a fingerprint, logf reports failed copies.
func (p *Dir) StartSpares(src func(fp string) string, logf func(msg string, args ...any)) *Spares {
	s := &Spares{
		pool: p, src: src, logf: logf,
		used: map[string]time.Time{}, gen: map[string]uint64{}, pending: map[string]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go s.run()
	return s
}

// Use records that an image was used (imported, or a create from it) at
// time t and schedules a refill of its spares if it is recent.
func (s *Spares) Use(fp string, t time.Time) {
	s.mu.Lock()
	if t.After(s.used[fp]) {
		s.used[fp] = t
	}
	s.pending[fp] = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Take moves a spare of image fp into place as container name's dir, owned
// by uid:gid. If no spare is ready but one is being copied, it waits for
// that copy (it is ahead of a copy started now, and two copies at once
// only slow each other down). It reports false if no spare was taken; the
// caller then copies the image itself.
func (s *Spares) Take(fp, name string, uid, gid int) bool {
	if _, err := os.Lstat(s.pool.ContainerDir(name)); err == nil {
		return false // CreateContainer reports it
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for tries := 0; tries < 3; tries++ {
		for _, sp := range s.pool.readySpares(fp) {
			if err := s.pool.claimSpare(sp, name, uid, gid); err != nil {
				s.logf("taking a spare rootfs failed, removing it", "spare", sp, "err", err)
				_ = removeAll(sp)
				continue
			}
			return true
		}
		if s.busy != fp {
			return false
		}
		end := s.busyEnd
		s.mu.Unlock()
		<-end
		s.mu.Lock()
	}
	return false
}

// Forget removes an image's spares, drops a copy of it in progress and
// stops refilling it (until its next Use).
func (s *Spares) Forget(fp string) error {
	s.mu.Lock()
	s.gen[fp]++
	delete(s.used, fp)
	delete(s.pending, fp)
	tmp, err := s.pool.detachSpares(fp)
	s.mu.Unlock()
	if tmp != "" {
		err = errors.Join(err, removeAll(tmp))
	}
	return err
}

// Close stops the refill goroutine; a copy in progress is abandoned (its
// staging dir is removed).
func (s *Spares) Close() {
	if s.stopped.CompareAndSwap(false, true) {
		close(s.stop)
	}
	<-s.done
}

// Busy reports whether a spare copy is in progress (for tests).
func (s *Spares) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy != ""
}

func (s *Spares) run() {
	defer close(s.done)
	tick := time.NewTicker(SpareTTL / 12)
	defer tick.Stop()
	for {
		if fp, ok := s.next(); ok {
			s.fill(fp)
			continue
		}
		select {
		case <-s.kick:
		case <-tick.C:
			s.expire()
		case <-s.stop:
			return
		}
	}
}

// next picks a pending image that was used recently and lacks spares, and
// marks it busy.
func (s *Spares) next() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped.Load() {
		return "", false
	}
	for fp := range s.pending {
		delete(s.pending, fp)
		if time.Since(s.used[fp]) > SpareTTL || len(s.pool.readySpares(fp)) >= MaxSparesPerImage {
			continue
		}
		s.busy, s.busyGen, s.busyEnd = fp, s.gen[fp], make(chan struct{})
		return fp, true
	}
	return "", false
}

// fill copies one spare of fp; it is renamed into place only if fp was not
// forgotten meanwhile.
func (s *Spares) fill(fp string) {
	stage, err := s.copy(fp)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && (s.gen[fp] != s.busyGen || s.stopped.Load()) {
		err = errDropped
	}
	if err == nil {
		err = os.MkdirAll(s.pool.SpareDir(fp), 0o700)
	}
	if err == nil {
		err = os.Rename(stage, filepath.Join(s.pool.SpareDir(fp), "s-"+filepath.Base(stage)[len(".tmp-"):]))
	}
	if err != nil {
		if stage != "" {
			_ = removeAll(stage)
		}
		if !errors.Is(err, errDropped) && !errors.Is(err, errCanceled) {
			s.logf("copying a spare rootfs failed", "image", fp, "err", err)
		}
	} else {
		s.pending[fp] = true // MaxSparesPerImage may allow another
	}
	close(s.busyEnd)
	s.busy, s.busyEnd = "", nil
}

// copy makes a complete copy of the image's rootfs in a staging dir of
// POOL/spares (mode 0100 root, rootfs/ inside).
func (s *Spares) copy(fp string) (string, error) {
	src := s.src(fp)
	if _, err := os.Stat(src); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(s.pool.spares(), ".tmp-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(stage, 0o100); err != nil {
		return stage, err
	}
	return stage, copyTree(src, filepath.Join(stage, "rootfs"), s.stopped.Load)
}

// expire removes the spares of images not used within SpareTTL.
func (s *Spares) expire() {
	s.mu.Lock()
	var old []string
	entries, _ := os.ReadDir(s.pool.spares())
	for _, e := range entries {
		fp := e.Name()
		if strings.HasPrefix(fp, ".") || time.Since(s.used[fp]) <= SpareTTL {
			continue
		}
		delete(s.used, fp)
		tmp, err := s.pool.detachSpares(fp)
		if err != nil {
			s.logf("removing expired spare rootfs failed", "image", fp, "err", err)
		}
		if tmp != "" {
			old = append(old, tmp)
		}
	}
	s.mu.Unlock()
	for _, tmp := range old {
		_ = removeAll(tmp)
	}
}
