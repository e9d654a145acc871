// Package idmap holds the user-namespace ID maps of unprivileged containers:
// the map entry type persisted in volatile.idmap.* keys, discovery of the
// host's subordinate ID range, the allocator for isolated maps and the
// raw.idmap parser.
//
// Everything here is pure except DiscoverHost, which reads /etc/subuid,
// /etc/subgid and /proc/self/uid_map; the store and the instance layer pass
// in what they know (existing allocations, raw.idmap text) and persist the
// results.
package idmap

import "errors"

// Sentinel errors; callers match them with errors.Is and the API layer maps
// them to status codes once.
var (
	// ErrInvalid reports malformed input (raw.idmap syntax, bad ranges).
	ErrInvalid = errors.New("invalid idmap")
	// ErrExhausted reports that no free range of the requested size is left.
	ErrExhausted = errors.New("Not enough uid/gid available for the container")
	// ErrConflict reports a raw entry that maps a host id reserved for
	// containers or overlaps another raw entry.
	ErrConflict = errors.New("idmap conflict")
	// ErrHostConfig reports a broken or unusable host subordinate-ID setup.
	ErrHostConfig = errors.New("unusable host idmap configuration")
)
