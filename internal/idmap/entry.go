package idmap

import (
	"encoding/json"
	"fmt"
	"sort"
)

// MaxID is the largest valid uid/gid: (uid_t)-1 is reserved as "no id".
const MaxID = 1<<32 - 2

// Entry maps Maprange ids starting at Nsid inside the container to ids
// starting at Hostid on the host. The JSON keys are capitalised because that
// is how LXD stores volatile.idmap.* values and clients read them.
type Entry struct {
	Isuid    bool  `json:"Isuid"`
	Isgid    bool  `json:"Isgid"`
	Hostid   int64 `json:"Hostid"`
	Nsid     int64 `json:"Nsid"`
	Maprange int64 `json:"Maprange"`
}

// Set is a complete ID map of one container.
type Set []Entry

// MarshalJSON renders an empty set as [] rather than null: LXD writes "[]"
// for volatile.last_state.idmap of an unshifted rootfs.
func (s Set) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]Entry(s))
}

// ParseJSON decodes a volatile.idmap.* value. The empty string is an empty set.
func ParseJSON(v string) (Set, error) {
	if v == "" {
		return Set{}, nil
	}
	var s Set
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// JSON encodes s for a volatile.idmap.* key.
func (s Set) JSON() string {
	b, _ := s.MarshalJSON() // cannot fail: plain ints and bools
	return string(b)
}

func (e Entry) valid() error {
	switch {
	case !e.Isuid && !e.Isgid:
		return fmt.Errorf("%w: entry maps neither uids nor gids", ErrInvalid)
	case e.Maprange <= 0:
		return fmt.Errorf("%w: empty range", ErrInvalid)
	case e.Hostid < 0 || e.Nsid < 0:
		return fmt.Errorf("%w: negative id", ErrInvalid)
	case e.Hostid+e.Maprange-1 > MaxID || e.Nsid+e.Maprange-1 > MaxID:
		return fmt.Errorf("%w: range beyond the largest id %d", ErrInvalid, int64(MaxID))
	}
	return nil
}

// Validate checks every entry and that no two entries of the same kind
// overlap on either side: the kernel refuses such maps at container start,
// and catching it here gives the user a readable error at config time.
func (s Set) Validate() error {
	for _, e := range s {
		if err := e.valid(); err != nil {
			return err
		}
	}
	for _, uid := range []bool{true, false} {
		k := s.kind(uid)
		if err := overlap(k, func(e Entry) int64 { return e.Nsid }); err != nil {
			return fmt.Errorf("%w: container ids mapped twice", err)
		}
		if err := overlap(k, func(e Entry) int64 { return e.Hostid }); err != nil {
			return fmt.Errorf("%w: host ids mapped twice", err)
		}
	}
	return nil
}

func overlap(es []Entry, start func(Entry) int64) error {
	sort.Slice(es, func(i, j int) bool { return start(es[i]) < start(es[j]) })
	for i := 1; i < len(es); i++ {
		if start(es[i-1])+es[i-1].Maprange > start(es[i]) {
			return ErrConflict
		}
	}
	return nil
}

// kind returns copies of the entries that map uids (uid=true) or gids,
// each narrowed to that single kind.
func (s Set) kind(uid bool) []Entry {
	var out []Entry
	for _, e := range s {
		if (uid && e.Isuid) || (!uid && e.Isgid) {
			e.Isuid, e.Isgid = uid, !uid
			out = append(out, e)
		}
	}
	return out
}

// HostID translates a container id to the host id it is mapped to.
func (s Set) HostID(uid bool, nsid int64) (int64, bool) {
	for _, e := range s.kind(uid) {
		if nsid >= e.Nsid && nsid < e.Nsid+e.Maprange {
			return e.Hostid + nsid - e.Nsid, true
		}
	}
	return 0, false
}
