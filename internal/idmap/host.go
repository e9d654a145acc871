package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Range is a contiguous block of host ids.
type Range struct {
	Base int64
	Size int64
}

// End is one past the last id of r.
func (r Range) End() int64 { return r.Base + r.Size }

// Overlaps reports whether the n ids from id share any with r.
func (r Range) Overlaps(id, n int64) bool { return id < r.End() && id+n > r.Base }

// Host is the block of subordinate ids the daemon may hand to containers.
type Host struct {
	UID Range
	GID Range
}

// Defaults when the daemon owns the whole id space (not inside a user
// namespace) and no subuid/subgid entry for root exists.
const (
	DefaultHostBase = 1000000
	DefaultHostSize = 1000000000
	// minHostRange is the smallest range worth using: one full container.
	minHostRange = 65536
)

// DiscoverHost reads the host configuration of the running system.
func DiscoverHost() (Host, error) {
	subuid, err1 := readOptional("/etc/subuid")
	subgid, err2 := readOptional("/etc/subgid")
	if err := errors.Join(err1, err2); err != nil {
		return Host{}, fmt.Errorf("%w: %v", ErrHostConfig, err)
	}
	uidMap, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return Host{}, fmt.Errorf("%w: %v", ErrHostConfig, err)
	}
	gidMap, err := os.ReadFile("/proc/self/gid_map")
	if err != nil {
		return Host{}, fmt.Errorf("%w: %v", ErrHostConfig, err)
	}
	return HostFrom(subuid, subgid, string(uidMap), string(gidMap))
}

func readOptional(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return string(b), err
}

// HostFrom decides the host range from file contents (empty string for an
// absent file). The first root entry of at least 64Ki ids in subuid and
// subgid wins; with neither, the kernel's own map decides. Having one but
// not the other is a half-configured shadow setup, which is refused rather
// than guessed around.
func HostFrom(subuid, subgid, uidMap, gidMap string) (Host, error) {
	u, uok := rootSubRange(subuid)
	g, gok := rootSubRange(subgid)
	switch {
	case uok && gok:
		return Host{UID: u, GID: g}, nil
	case uok != gok:
		return Host{}, fmt.Errorf("%w: root has a range in only one of /etc/subuid and /etc/subgid", ErrHostConfig)
	}
	u, err := kernelRange(uidMap)
	if err != nil {
		return Host{}, fmt.Errorf("uid_map: %w", err)
	}
	g, err = kernelRange(gidMap)
	if err != nil {
		return Host{}, fmt.Errorf("gid_map: %w", err)
	}
	return Host{UID: u, GID: g}, nil
}

// rootSubRange finds the first "root:start:count" line with count >= 64Ki.
func rootSubRange(content string) (Range, bool) {
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) != 3 || f[0] != "root" {
			continue
		}
		base, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || base < 0 || size < minHostRange || base+size-1 > MaxID {
			continue
		}
		return Range{Base: base, Size: size}, true
	}
	return Range{}, false
}

// kernelRange picks a range from /proc/self/[ug]id_map. Outside a user
// namespace (one full-range line) the conventional default block is used;
// inside one, the first mapped block at or above 100000 that can hold one
// container.
func kernelRange(content string) (Range, error) {
	type line struct{ ns, host, n int64 }
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(content), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		var v [3]int64
		var err error
		for i := range f {
			if v[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
				return Range{}, fmt.Errorf("%w: bad map line %q", ErrHostConfig, l)
			}
		}
		lines = append(lines, line{v[0], v[1], v[2]})
	}
	if len(lines) == 1 && lines[0].ns == 0 && lines[0].host == 0 && lines[0].n == 1<<32-1 {
		return Range{Base: DefaultHostBase, Size: DefaultHostSize}, nil
	}
	const floor = 100000
	for _, l := range lines {
		start, end := max(l.ns, floor), l.ns+l.n
		if end-start >= minHostRange {
			return Range{Base: start, Size: end - start}, nil
		}
	}
	return Range{}, fmt.Errorf("%w: no mapped range of %d ids at or above %d", ErrHostConfig, minHostRange, floor)
}

// Full is the map shared by all non-isolated containers: the whole host block.
func (h Host) Full() Set {
	return Set{
		{Isuid: true, Hostid: h.UID.Base, Nsid: 0, Maprange: h.UID.Size},
		{Isgid: true, Hostid: h.GID.Base, Nsid: 0, Maprange: h.GID.Size},
	}
}
