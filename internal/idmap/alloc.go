package idmap

import (
	"fmt"
	"sort"
)

// DefaultIsolatedSize is the size of an isolated map when
// security.idmap.size is unset.
const DefaultIsolatedSize = 65536

// reserved is kept free at the start of the host block: it is the range
// non-isolated containers map their low (system) ids to.
const reserved = 65536

// AllocateIsolated returns the host base for a new isolated map of size ids
// inside host, given the (base, size) of every other isolated container.
// It is first-fit from host.Base+64Ki, so the first two containers get
// base+65536 and base+131072. The caller must hold the global allocation
// lock across reading existing allocations and persisting the result.
//
// On failure the error wraps ErrExhausted and names the largest block still
// free, which is the most a single container could get.
func AllocateIsolated(host Range, size int64, existing []Range) (int64, error) {
	if size <= 0 {
		return 0, fmt.Errorf("%w: size %d", ErrInvalid, size)
	}
	taken := append([]Range(nil), existing...)
	sort.Slice(taken, func(i, j int) bool { return taken[i].Base < taken[j].Base })

	cursor := host.Base + reserved
	var largest int64
	for _, t := range taken {
		if t.Size <= 0 || t.End() <= cursor {
			continue
		}
		gap := min(t.Base, host.End()) - cursor
		if gap >= size {
			return cursor, nil
		}
		largest = max(largest, gap)
		cursor = t.End()
		if cursor >= host.End() {
			break
		}
	}
	gap := host.End() - cursor
	if gap >= size {
		return cursor, nil
	}
	largest = max(largest, gap)
	return 0, fmt.Errorf("%w: %d left", ErrExhausted, largest)
}

// Allocatable is the block isolated maps are carved from. uid and gid
// blocks may start at different ids; a container gets the same offset into
// both, so only the common length is usable.
func (h Host) Allocatable() Range {
	return Range{Base: h.UID.Base, Size: min(h.UID.Size, h.GID.Size)}
}

// Isolated builds the map of an isolated container whose uid block starts
// at base (a value returned by AllocateIsolated over h.Allocatable()).
func (h Host) Isolated(base, size int64) Set {
	off := base - h.UID.Base
	return Set{
		{Isuid: true, Hostid: base, Nsid: 0, Maprange: size},
		{Isgid: true, Hostid: h.GID.Base + off, Nsid: 0, Maprange: size},
	}
}

// Fits reports whether an isolated map of size ids at base lies inside
// host, above the reserved start, and overlaps none of existing: whether
// a container may keep the block it has.
func Fits(host Range, base, size int64, existing []Range) bool {
	if size <= 0 || base < host.Base+reserved || base+size > host.End() {
		return false
	}
	for _, e := range existing {
		if e.Size > 0 && e.Overlaps(base, size) {
			return false
		}
	}
	return true
}
