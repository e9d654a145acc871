package idmap

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ParseRaw parses a raw.idmap value: one mapping per line,
//
//	uid|gid|both <host>[-<hostend>] <ns>[-<nsend>]
//
// with inclusive ranges of equal size. Blank lines are ignored. The input
// comes from API users, so every malformed line is an ErrInvalid, never a
// panic (see FuzzParseRaw).
func ParseRaw(text string) ([]Entry, error) {
	var out []Entry
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e, err := parseRawLine(line)
		if err != nil {
			return nil, fmt.Errorf("raw.idmap line %d: %w", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseRawLine(line string) (Entry, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Entry{}, fmt.Errorf("%w: want 3 fields (uid|gid|both HOST NS), got %d", ErrInvalid, len(f))
	}
	var e Entry
	switch f[0] {
	case "uid":
		e.Isuid = true
	case "gid":
		e.Isgid = true
	case "both":
		e.Isuid, e.Isgid = true, true
	default:
		return Entry{}, fmt.Errorf("%w: unknown type %q", ErrInvalid, f[0])
	}
	hostStart, hostEnd, err := parseIDRange(f[1])
	if err != nil {
		return Entry{}, err
	}
	nsStart, nsEnd, err := parseIDRange(f[2])
	if err != nil {
		return Entry{}, err
	}
	if hostEnd-hostStart != nsEnd-nsStart {
		return Entry{}, fmt.Errorf("%w: The ID map ranges are of different sizes", ErrInvalid)
	}
	e.Hostid, e.Nsid, e.Maprange = hostStart, nsStart, hostEnd-hostStart+1
	return e, nil
}

// parseIDRange parses "N" or "N-M" (inclusive, N <= M).
func parseIDRange(s string) (int64, int64, error) {
	a, b, isRange := strings.Cut(s, "-")
	start, err := parseID(a)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return start, start, nil
	}
	end, err := parseID(b)
	if err != nil {
		return 0, 0, err
	}
	if end < start {
		return 0, 0, fmt.Errorf("%w: range %q ends before it starts", ErrInvalid, s)
	}
	return start, end, nil
}

func parseID(s string) (int64, error) {
	// Base 10 ParseUint takes digits only: no sign, prefix or underscore.
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v > MaxID {
		return 0, fmt.Errorf("%w: bad id %q", ErrInvalid, s)
	}
	return int64(v), nil
}

// Layer inserts raw entries into base by cutting the container ids they
// claim out of base's ranges. A raw entry may not map a host id from the
// subordinate block of host: those belong to containers, and handing one
// to this container would let it share files with another.
func Layer(base Set, raw []Entry, host Host) (Set, error) {
	for _, r := range raw {
		if err := r.valid(); err != nil {
			return nil, err
		}
		if r.Isuid && host.UID.Overlaps(r.Hostid, r.Maprange) {
			return nil, fmt.Errorf("%w: host uid %d-%d is inside the subordinate range", ErrConflict, r.Hostid, r.Hostid+r.Maprange-1)
		}
		if r.Isgid && host.GID.Overlaps(r.Hostid, r.Maprange) {
			return nil, fmt.Errorf("%w: host gid %d-%d is inside the subordinate range", ErrConflict, r.Hostid, r.Hostid+r.Maprange-1)
		}
	}
	if err := Set(raw).Validate(); err != nil {
		return nil, fmt.Errorf("raw.idmap: %w", err)
	}

	var out Set
	for _, uid := range []bool{true, false} {
		pieces := base.kind(uid)
		for _, r := range Set(raw).kind(uid) {
			pieces = cut(pieces, r.Nsid, r.Nsid+r.Maprange)
		}
		out = append(out, pieces...)
	}
	out = append(out, raw...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Nsid != out[j].Nsid {
			return out[i].Nsid < out[j].Nsid
		}
		return out[i].Isuid && !out[j].Isuid
	})
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// cut removes container ids [lo, hi) from single-kind entries, splitting
// an entry in two when the hole is in its middle.
func cut(es []Entry, lo, hi int64) []Entry {
	var out []Entry
	for _, e := range es {
		end := e.Nsid + e.Maprange
		if hi <= e.Nsid || lo >= end {
			out = append(out, e)
			continue
		}
		if lo > e.Nsid {
			left := e
			left.Maprange = lo - e.Nsid
			out = append(out, left)
		}
		if hi < end {
			right := e
			right.Nsid = hi
			right.Hostid = e.Hostid + (hi - e.Nsid)
			right.Maprange = end - hi
			out = append(out, right)
		}
	}
	return out
}
