// Package instance is the service layer between the API and the liblxc
// driver: it expands profiles, turns validated config into a driver Spec,
// computes ID maps (isolated allocation, raw.idmap) and keeps one driver
// handle per container.
package instance

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/idmap"
	lxcdriver "github.com/moat/moat/internal/instance/lxc"
	"github.com/moat/moat/internal/project"
	"github.com/moat/moat/internal/store"
)

// LXCName is the liblxc (and cgroup) name of an instance. Instance names
// never contain '.', so names of other projects cannot collide with
// default-project ones.
func LXCName(project, name string) string {
	if project == "default" {
		return name
	}
	h := sha256.Sum256([]byte(project + "\x00" + name))
	return "prj." + hex.EncodeToString(h[:8])
}

// Expand applies profiles (in order) then the instance's own config and
// devices.
func Expand(profiles []store.Profile, cfg map[string]string, devices store.Devices) (map[string]string, store.Devices) {
	ec := map[string]string{}
	ed := store.Devices{}
	for _, p := range profiles {
		for k, v := range p.Config {
			ec[k] = v
		}
		for n, d := range p.Devices {
			ed[n] = d
		}
	}
	for k, v := range cfg {
		ec[k] = v
	}
	for n, d := range devices {
		ed[n] = d
	}
	return ec, ed
}

// ValidName checks an instance name: hostname-like, 1-63 characters.
func ValidName(name string) error {
	if name == "" || len(name) > 63 {
		return errdefs.Invalidf("Invalid instance name %q: must be 1 to 63 characters", name)
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return errdefs.Invalidf("Invalid instance name %q: must not start or end with '-'", name)
	}
	if name[0] >= '0' && name[0] <= '9' {
		return errdefs.Invalidf("Invalid instance name %q: must not start with a digit", name)
	}
	for _, r := range name {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return errdefs.Invalidf("Invalid instance name %q: only letters, digits and '-' are allowed", name)
		}
	}
	return nil
}

// Allocation is an isolated map's host uid block.
type Allocation struct{ Base, Size int64 }

// AllocationOf is the isolated block an instance holds, from its expanded
// config: exactly [volatile.idmap.base, base+security.idmap.size). ok is
// false for instances without one (privileged, or sharing the host block).
//
// The recorded map is not read: raw.idmap entries cut container ids out of
// the block and map host ids outside the subordinate range, so measuring
// the map would count a high LDAP uid as allocated (exhausting the range
// for everyone) or miss the block's last ids when raw.idmap remaps them.
func AllocationOf(ec map[string]string) (Allocation, bool) {
	base, err := strconv.ParseInt(ec["volatile.idmap.base"], 10, 64)
	if err != nil || base <= 0 || config.IsTrue(ec["security.privileged"]) {
		return Allocation{}, false
	}
	return Allocation{Base: base, Size: idmapSize(ec)}, true
}

// idmapSize is security.idmap.size (validated by package config) or the
// default.
func idmapSize(ec map[string]string) int64 {
	if n, err := strconv.ParseInt(ec["security.idmap.size"], 10, 64); err == nil && n > 0 {
		return n
	}
	return idmap.DefaultIsolatedSize
}

// ComputeIDMap returns the map an instance gets with expanded config ec
// and the volatile.idmap.base it should record. others are the blocks of
// every other isolated instance; cur is the instance's current
// allocation, kept when it still fits.
func ComputeIDMap(host idmap.Host, ec map[string]string, cur *Allocation, others []Allocation) (idmap.Set, int64, error) {
	if config.IsTrue(ec["security.privileged"]) {
		return nil, 0, nil
	}
	var set idmap.Set
	var base int64
	isolated := config.IsTrue(ec["security.idmap.isolated"])
	size := idmapSize(ec)
	switch {
	case ec["security.idmap.base"] != "":
		base, _ = strconv.ParseInt(ec["security.idmap.base"], 10, 64)
		if base < host.UID.Base || base+size > host.Allocatable().End() {
			return nil, 0, errdefs.Invalidf("security.idmap.base %d with size %d is outside the host's subordinate range %d-%d",
				base, size, host.UID.Base, host.Allocatable().End()-1)
		}
		// LXD does not check a fixed base against other blocks; Moat
		// does, so two containers with their own maps never share host
		// ids, however they got them.
		for _, o := range others {
			if (idmap.Range{Base: o.Base, Size: o.Size}).Overlaps(base, size) {
				return nil, 0, errdefs.Invalidf("security.idmap.base %d with size %d overlaps the host IDs %d-%d of another container",
					base, size, o.Base, o.Base+o.Size-1)
			}
		}
		set = host.Isolated(base, size)
	case isolated:
		var taken []idmap.Range
		for _, o := range others {
			taken = append(taken, idmap.Range{Base: o.Base, Size: o.Size})
		}
		// The block stays where it is while it still fits, so a config
		// change that leaves security.idmap.* alone never moves it:
		// files the container wrote are owned by its host ids, and a
		// new base would leave them owned by ids it no longer maps.
		if cur != nil && idmap.Fits(host.Allocatable(), cur.Base, size, taken) {
			base = cur.Base
		} else {
			b, err := idmap.AllocateIsolated(host.Allocatable(), size, taken)
			if err != nil {
				return nil, 0, errdefs.Conflictf("Cannot allocate an isolated ID map of %d ids: %v", size, err)
			}
			base = b
		}
		set = host.Isolated(base, size)
	default:
		set = host.Full()
		if v := ec["security.idmap.size"]; v != "" {
			for i := range set {
				set[i].Maprange = min(set[i].Maprange, size)
			}
		}
	}
	if raw := ec["raw.idmap"]; raw != "" {
		entries, err := idmap.ParseRaw(raw)
		if err != nil {
			return nil, 0, errdefs.Invalidf("Invalid raw.idmap: %v", err)
		}
		set, err = idmap.Layer(set, entries, host)
		if err != nil {
			return nil, 0, errdefs.Invalidf("Invalid raw.idmap: %v", err)
		}
	}
	return set, base, nil
}

// RootOwner is the host uid/gid of the container's root.
func RootOwner(set idmap.Set) (int, int) {
	if len(set) == 0 {
		return 0, 0
	}
	u, _ := set.HostID(true, 0)
	g, _ := set.HostID(false, 0)
	return int(u), int(g)
}

// hostMemory is the host's RAM in bytes, for percentage limits.
func hostMemory() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// Limits converts expanded limits.* keys to driver limits.
func Limits(ec map[string]string) lxcdriver.Limits {
	var l lxcdriver.Limits
	l.CPU = ec["limits.cpu"]
	if m := ec["limits.memory"]; m != "" {
		if p, ok := strings.CutSuffix(m, "%"); ok {
			n, _ := strconv.ParseInt(p, 10, 64)
			l.Memory = hostMemory() / 100 * n
		} else {
			n, _ := config.ParseByteSize(m)
			l.Memory = int64(n)
		}
		l.MemoryEnforce = lxcdriver.MemoryEnforce(config.Instance.Get(ec, "limits.memory.enforce"))
	}
	if p := ec["limits.processes"]; p != "" {
		l.Processes, _ = strconv.ParseInt(p, 10, 64)
	}
	return l
}

// SpecArgs is what BuildSpec needs besides config.
type SpecArgs struct {
	Name    string // instance name (hostname)
	LXCName string
	LXCPath string
	Rootfs  string
	IDMap   idmap.Set
	Config  map[string]string
	Devices store.Devices
	// The instance's project, whose restrictions disk sources are checked
	// against once resolved.
	Project       string
	ProjectConfig map[string]string
}

// BuildSpec turns expanded, validated config into a driver spec. Host
// paths of disks and device nodes are checked here (they must exist when
// the container starts). A disk's source goes to the driver as its
// canonical path, checked again against the project's restrictions: the
// driver's helper opens it following no symlink, so what is mounted is
// what was checked here, whatever happens to the path in between.
func BuildSpec(a SpecArgs) (lxcdriver.Spec, error) {
	s := lxcdriver.Spec{
		Name: a.LXCName, LXCPath: a.LXCPath, Rootfs: a.Rootfs,
		Privileged: config.IsTrue(a.Config["security.privileged"]),
		Nesting:    config.IsTrue(a.Config["security.nesting"]),
		Hostname:   a.Name,
		HaltSignal: syscall.SIGPWR,
		Limits:     Limits(a.Config),
	}
	if !s.Privileged {
		s.IDMap = a.IDMap
		if err := CheckDeviceOwners(s.IDMap, a.Devices); err != nil {
			return s, err
		}
	}
	for name, d := range a.Devices {
		switch d["type"] {
		case config.DeviceDisk:
			if d["path"] == "/" {
				continue
			}
			src, err := canonicalSource(d["source"])
			if err != nil {
				if required(d) {
					return s, errdefs.Invalidf("Device %q: source %q: %v", name, d["source"], err)
				}
				continue
			}
			resolved := maps.Clone(d)
			resolved["source"] = src
			if err := project.CheckDiskSource(a.Project, a.ProjectConfig, a.Name, name, resolved); err != nil {
				return s, fmt.Errorf("Device %q: source %q resolves to %q: %w", name, d["source"], src, err)
			}
			s.Mounts = append(s.Mounts, lxcdriver.Mount{Source: src, Path: d["path"], ReadOnly: config.IsTrue(d["readonly"])})
		case config.DeviceUnixChar, config.DeviceUnixBlock:
			dev, err := unixDevice(d)
			if errors.Is(err, fs.ErrNotExist) && !required(d) {
				continue // comes with the next start or device change
			}
			if err != nil {
				return s, errdefs.Invalidf("Device %q: %v", name, err)
			}
			s.Devices = append(s.Devices, dev)
		}
	}
	return s, nil
}

// CheckDeviceOwners refuses a unix-char or unix-block device whose uid or
// gid the container's ID map set does not map (nil: a privileged
// container, whose ids are the host's): its node could not be given that
// owner. It needs the map, so it runs where the map is computed, before
// the config is stored, and again when the spec is built.
func CheckDeviceOwners(set idmap.Set, devices store.Devices) error {
	if set == nil {
		return nil
	}
	names := slices.Sorted(maps.Keys(devices))
	for _, name := range names {
		d := devices[name]
		if d["type"] != config.DeviceUnixChar && d["type"] != config.DeviceUnixBlock {
			continue
		}
		for _, k := range []string{"uid", "gid"} {
			id, _ := strconv.ParseInt(d[k], 10, 64) // validated by package config; "" is 0
			if _, ok := set.HostID(k == "uid", id); !ok {
				return errdefs.Invalidf("Device %q: key %q: container id %d is not mapped by the instance's ID map", name, k, id)
			}
		}
	}
	return nil
}

// canonicalSource is the absolute path of source with no symlink left in
// it, which must exist.
func canonicalSource(source string) (string, error) {
	if !filepath.IsAbs(source) {
		return "", fmt.Errorf("%w: not an absolute path", errdefs.ErrInvalid)
	}
	return filepath.EvalSymlinks(source)
}

// required reports whether a device whose source is missing must stop
// the container from starting (the default) or is left out.
func required(d map[string]string) bool {
	return d["required"] == "" || config.IsTrue(d["required"])
}

// unixDevice is the driver device for a unix-char or unix-block device;
// a missing source gives an error wrapping fs.ErrNotExist.
func unixDevice(d map[string]string) (lxcdriver.Device, error) {
	dev := lxcdriver.Device{Type: lxcdriver.CharDevice, Path: d["path"]}
	if d["type"] == config.DeviceUnixBlock {
		dev.Type = lxcdriver.BlockDevice
	}
	if dev.Path == "" {
		dev.Path = d["source"]
	}
	if d["major"] != "" {
		ma, _ := strconv.ParseUint(d["major"], 10, 32)
		mi, _ := strconv.ParseUint(d["minor"], 10, 32)
		dev.Major, dev.Minor = uint32(ma), uint32(mi)
	} else {
		var st unix.Stat_t
		if err := unix.Stat(d["source"], &st); err != nil {
			return dev, fmt.Errorf("source %q: %w", d["source"], err)
		}
		want := uint32(unix.S_IFCHR)
		if dev.Type == lxcdriver.BlockDevice {
			want = unix.S_IFBLK
		}
		if st.Mode&unix.S_IFMT != want {
			return dev, fmt.Errorf("source %q is not a %s device", d["source"], d["type"])
		}
		dev.Major, dev.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
	if m := d["mode"]; m != "" {
		n, _ := strconv.ParseUint(m, 8, 32)
		dev.Mode = os.FileMode(n)
	}
	// Validated by package config (at most idmap.MaxID).
	uid, _ := strconv.ParseUint(d["uid"], 10, 32)
	gid, _ := strconv.ParseUint(d["gid"], 10, 32)
	dev.UID, dev.GID = uint32(uid), uint32(gid)
	return dev, nil
}

// Handles caches one driver handle per container; a config change
// replaces it (or forgets it, so the next use builds one from the new
// spec).
type Handles struct {
	mu sync.Mutex
	m  map[string]*lxcdriver.Container
}

// Get returns the cached handle for lxcName, building it with mk if absent.
func (h *Handles) Get(lxcName string, mk func() (lxcdriver.Spec, error)) (*lxcdriver.Container, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.m[lxcName]; ok {
		return c, nil
	}
	spec, err := mk()
	if err != nil {
		return nil, err
	}
	c, err := lxcdriver.New(spec)
	if err != nil {
		return nil, err
	}
	if h.m == nil {
		h.m = map[string]*lxcdriver.Container{}
	}
	h.m[lxcName] = c
	return c, nil
}

// Forget drops a cached handle, closing it.
func (h *Handles) Forget(lxcName string) {
	h.mu.Lock()
	c := h.m[lxcName]
	delete(h.m, lxcName)
	h.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Replace caches c for lxcName and closes the handle it replaces.
func (h *Handles) Replace(lxcName string, c *lxcdriver.Container) {
	h.mu.Lock()
	old := h.m[lxcName]
	if h.m == nil {
		h.m = map[string]*lxcdriver.Container{}
	}
	h.m[lxcName] = c
	h.mu.Unlock()
	if old != nil && old != c {
		old.Close()
	}
}
