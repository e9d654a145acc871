package instance

import (
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/internal/idmap"
)

var testHost = idmap.Host{
	UID: idmap.Range{Base: 1000000, Size: 1000000000},
	GID: idmap.Range{Base: 1000000, Size: 1000000000},
}

// assign computes an instance's map like the daemon does and returns its
// config with the volatile keys recorded.
func assign(t *testing.T, ec map[string]string, others []Allocation) map[string]string {
	t.Helper()
	var cur *Allocation
	if a, ok := AllocationOf(ec); ok {
		cur = &a
	}
	set, base, err := ComputeIDMap(testHost, ec, cur, others)
	if err != nil {
		t.Fatal(err)
	}
	out := maps.Clone(ec)
	out["volatile.idmap.base"] = strconv.FormatInt(base, 10)
	out["volatile.idmap.next"] = set.JSON()
	return out
}

func isolated(extra ...string) map[string]string {
	ec := map[string]string{"security.idmap.isolated": "true"}
	for i := 0; i+1 < len(extra); i += 2 {
		ec[extra[i]] = extra[i+1]
	}
	return ec
}

// A raw.idmap of a host id above the subordinate range (an LDAP uid over
// 1e9) is not part of the allocation: the next container still fits.
func TestAllocationIgnoresHighRawIdmap(t *testing.T) {
	first := assign(t, isolated("raw.idmap", "both 1500000000 1000"), nil)
	a, ok := AllocationOf(first)
	if !ok || a != (Allocation{Base: 1065536, Size: 65536}) {
		t.Fatalf("allocation %+v %v", a, ok)
	}
	if h, _ := mustParse(t, first["volatile.idmap.next"]).HostID(true, 1000); h != 1500000000 {
		t.Fatalf("raw.idmap not applied: uid 1000 -> %d", h)
	}
	second := assign(t, isolated(), []Allocation{a})
	if second["volatile.idmap.base"] != "1131072" {
		t.Fatalf("second container base %s", second["volatile.idmap.base"])
	}
}

// Remapping the block's last container id keeps the block's size, so the
// base does not move on the next update, even when a lower block has been
// freed since.
func TestRemappingLastIDKeepsBase(t *testing.T) {
	lower := Allocation{Base: 1065536, Size: 65536}
	cfg := assign(t, isolated("raw.idmap", "both 1000 65535"), []Allocation{lower})
	a, _ := AllocationOf(cfg)
	if a != (Allocation{Base: 1131072, Size: 65536}) {
		t.Fatalf("allocation %+v", a)
	}
	if h, ok := mustParse(t, cfg["volatile.idmap.next"]).HostID(true, 65535); !ok || h != 1000 {
		t.Fatalf("raw.idmap not applied: uid 65535 -> %d %v", h, ok)
	}
	// An unrelated change after the lower container is gone, and again
	// with a neighbour right after the block: the base stays.
	cfg["limits.memory"] = "64MiB"
	for _, others := range [][]Allocation{nil, {{Base: 1196608, Size: 65536}}} {
		again := assign(t, cfg, others)
		if again["volatile.idmap.base"] != cfg["volatile.idmap.base"] || again["volatile.idmap.next"] != cfg["volatile.idmap.next"] {
			t.Fatalf("base moved: %s -> %s", cfg["volatile.idmap.base"], again["volatile.idmap.base"])
		}
	}
}

func TestSizeChangeMovesOnlyWhenNeeded(t *testing.T) {
	cfg := assign(t, isolated(), nil)
	// Growing with room behind the block keeps it.
	grown := assign(t, isolated("security.idmap.size", "131072", "volatile.idmap.base", cfg["volatile.idmap.base"]), nil)
	if grown["volatile.idmap.base"] != cfg["volatile.idmap.base"] {
		t.Fatalf("growth with room moved the base to %s", grown["volatile.idmap.base"])
	}
	// Growing into a neighbour moves it past the neighbour.
	moved := assign(t, isolated("security.idmap.size", "131072", "volatile.idmap.base", cfg["volatile.idmap.base"]),
		[]Allocation{{Base: 1131072, Size: 65536}})
	if moved["volatile.idmap.base"] != "1196608" {
		t.Fatalf("growth into a neighbour: base %s", moved["volatile.idmap.base"])
	}
}

func TestAllocationOf(t *testing.T) {
	for _, c := range []struct {
		ec   map[string]string
		want Allocation
		ok   bool
	}{
		{map[string]string{"volatile.idmap.base": "2000000"}, Allocation{2000000, 65536}, true},
		{map[string]string{"volatile.idmap.base": "2000000", "security.idmap.size": "200000"}, Allocation{2000000, 200000}, true},
		{map[string]string{"volatile.idmap.base": "0"}, Allocation{}, false},
		{map[string]string{}, Allocation{}, false},
		{map[string]string{"volatile.idmap.base": "2000000", "security.privileged": "true"}, Allocation{}, false},
	} {
		if a, ok := AllocationOf(c.ec); a != c.want || ok != c.ok {
			t.Errorf("AllocationOf(%v) = %+v %v, want %+v %v", c.ec, a, ok, c.want, c.ok)
		}
	}
}

func mustParse(t *testing.T, v string) idmap.Set {
	t.Helper()
	s, err := idmap.ParseJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A fixed security.idmap.base must not overlap another container's block
// (LXD does not check): overlapping at either end or inside is a 400
// naming the key; right next to the block is fine, and so is a container's
// own block (the caller leaves it out of others).
func TestFixedBaseOverlap(t *testing.T) {
	other := []Allocation{{Base: 1065536, Size: 65536}}
	for _, base := range []string{"1065536", "1065546", "1000001", "1131071"} {
		ec := map[string]string{"security.idmap.base": base}
		if _, _, err := ComputeIDMap(testHost, ec, nil, other); err == nil || !strings.Contains(err.Error(), "security.idmap.base") || !strings.Contains(err.Error(), "overlaps") {
			t.Errorf("base %s over another block: %v", base, err)
		}
	}
	for _, base := range []string{"1131072", "1000000"} {
		ec := map[string]string{"security.idmap.base": base, "security.idmap.size": "65536"}
		if _, b, err := ComputeIDMap(testHost, ec, nil, other); err != nil || strconv.FormatInt(b, 10) != base {
			t.Errorf("base %s next to another block: %d %v", base, b, err)
		}
	}
}
