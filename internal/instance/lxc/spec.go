package lxcdriver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/moat/moat/internal/idmap"
)

// Sentinel errors, matched with errors.Is by the instance layer.
var (
	ErrInvalidSpec = errors.New("invalid container spec")
	ErrNotRunning  = errors.New("container is not running")
	ErrRunning     = errors.New("container is running")
	ErrStart       = errors.New("container failed to start")
	ErrUnsupported = errors.New("not supported on this host")
)

// Spec is everything the driver needs to run one container. The instance
// layer builds it from validated, expanded config; the driver re-checks
// only what would corrupt the generated liblxc config or weaken isolation.
type Spec struct {
	Name    string // container name, also the liblxc name
	LXCPath string // parent of the per-container config dir LXCPath/Name
	Rootfs  string // absolute path of the (never chowned) root filesystem

	// Privileged runs without a user namespace; otherwise IDMap is required.
	Privileged bool
	IDMap      idmap.Set
	// Nesting makes /proc and /sys writable for a nested container
	// manager. For a privileged container that gives root on the host:
	// the config layer refuses the pair unless the admin forces it
	// (security.privileged.allow_nesting), and then it takes effect too.
	Nesting bool

	Hostname   string         // defaults to Name
	HaltSignal syscall.Signal // sent to init on a clean stop; defaults to SIGPWR

	Limits  Limits
	Mounts  []Mount
	Devices []Device
}

// MemoryEnforce selects how limits.memory is applied.
type MemoryEnforce string

const (
	MemoryHard MemoryEnforce = "hard" // the kernel never lets usage exceed it
	MemorySoft MemoryEnforce = "soft" // reclaimed first, only under host pressure
)

// Limits are resource limits; zero values mean unlimited.
type Limits struct {
	CPU           string // a count ("2") or a cpuset ("0-3,5")
	Memory        int64  // bytes
	MemoryEnforce MemoryEnforce
	Processes     int64
}

// Mount is a disk device: a host path bind-mounted into the container.
type Mount struct {
	Source   string // absolute host path
	Path     string // absolute path inside the container
	ReadOnly bool
}

// DeviceType is 'c' (unix-char) or 'b' (unix-block).
type DeviceType byte

const (
	CharDevice  DeviceType = 'c'
	BlockDevice DeviceType = 'b'
)

// Device is a device node made available inside the container.
type Device struct {
	Type         DeviceType
	Path         string // absolute path inside the container
	Major, Minor uint32
	Mode         os.FileMode // permission bits of the node; 0660 if zero
	// UID and GID own the node as the container sees it (0 is the
	// container's root); on the host the node belongs to the ids they
	// map to.
	UID, GID uint32
}

// nodeOwner is the host uid and gid that own d's node, so that inside the
// container it belongs to d.UID and d.GID. A privileged container has no
// map: its ids are the host's. validate has checked that both are mapped.
func (s *Spec) nodeOwner(d Device) (int, int) {
	if s.Privileged {
		return int(d.UID), int(d.GID)
	}
	u, _ := s.IDMap.HostID(true, int64(d.UID))
	g, _ := s.IDMap.HostID(false, int64(d.GID))
	return int(u), int(g)
}

// Liblxc names end up in cgroup names, abstract socket names and paths.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$`)

func (s *Spec) validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("%w: bad name %q", ErrInvalidSpec, s.Name)
	}
	for _, p := range []string{s.LXCPath, s.Rootfs} {
		if err := checkHostPath(p); err != nil {
			return err
		}
	}
	if s.Privileged == (len(s.IDMap) > 0) {
		return fmt.Errorf("%w: exactly one of privileged and an idmap is required", ErrInvalidSpec)
	}
	if err := s.IDMap.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if !s.Privileged {
		if _, ok := s.IDMap.HostID(true, 0); !ok {
			return fmt.Errorf("%w: idmap does not map container root", ErrInvalidSpec)
		}
		if _, ok := s.IDMap.HostID(false, 0); !ok {
			return fmt.Errorf("%w: idmap does not map container root group", ErrInvalidSpec)
		}
	}
	if s.Hostname != "" && !nameRE.MatchString(s.Hostname) {
		return fmt.Errorf("%w: bad hostname %q", ErrInvalidSpec, s.Hostname)
	}
	if s.HaltSignal < 0 || s.HaltSignal >= 65 {
		return fmt.Errorf("%w: bad halt signal %d", ErrInvalidSpec, s.HaltSignal)
	}
	if err := s.Limits.validate(); err != nil {
		return err
	}
	for _, m := range s.Mounts {
		if err := checkHostPath(m.Source); err != nil {
			return err
		}
		if err := checkContainerPath(m.Path); err != nil {
			return err
		}
	}
	for _, d := range s.Devices {
		if d.Type != CharDevice && d.Type != BlockDevice {
			return fmt.Errorf("%w: bad device type %q", ErrInvalidSpec, d.Type)
		}
		if err := checkContainerPath(d.Path); err != nil {
			return err
		}
		if d.Mode&^os.ModePerm != 0 {
			return fmt.Errorf("%w: device mode %v has more than permission bits", ErrInvalidSpec, d.Mode)
		}
		if !s.Privileged {
			if _, ok := s.IDMap.HostID(true, int64(d.UID)); !ok {
				return fmt.Errorf("%w: device %s: uid %d is not mapped in the container", ErrInvalidSpec, d.Path, d.UID)
			}
			if _, ok := s.IDMap.HostID(false, int64(d.GID)); !ok {
				return fmt.Errorf("%w: device %s: gid %d is not mapped in the container", ErrInvalidSpec, d.Path, d.GID)
			}
		}
	}
	return nil
}

var cpusetRE = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

func (l Limits) validate() error {
	// A bare number is a count, which must be at least 1; "0-0" pins CPU 0.
	if l.CPU != "" && (!cpusetRE.MatchString(l.CPU) || strings.TrimLeft(l.CPU, "0") == "") {
		return fmt.Errorf("%w: bad limits.cpu %q", ErrInvalidSpec, l.CPU)
	}
	if l.Memory < 0 || l.Processes < 0 {
		return fmt.Errorf("%w: negative limit", ErrInvalidSpec)
	}
	switch l.MemoryEnforce {
	case "", MemoryHard, MemorySoft:
	default:
		return fmt.Errorf("%w: bad limits.memory.enforce %q", ErrInvalidSpec, l.MemoryEnforce)
	}
	return nil
}

// checkHostPath accepts clean absolute paths without control characters:
// a newline in a path would inject arbitrary keys into the liblxc config.
func checkHostPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || hasControl(p) {
		return fmt.Errorf("%w: bad path %q", ErrInvalidSpec, p)
	}
	return nil
}

func checkContainerPath(p string) error {
	if err := checkHostPath(p); err != nil {
		return err
	}
	if p == "/" {
		return fmt.Errorf("%w: cannot mount over the container root", ErrInvalidSpec)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// dir is the per-container config directory.
func (s *Spec) dir() string { return filepath.Join(s.LXCPath, s.Name) }
