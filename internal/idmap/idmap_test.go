package idmap

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const fullMap = "         0          0 4294967295\n"

func TestHostFrom(t *testing.T) {
	tests := []struct {
		name           string
		subuid, subgid string
		uidMap         string
		want           Host
		err            error
	}{
		{
			name:   "subuid root entry",
			subuid: "alice:100000:65536\nroot:200000:1000000\n",
			subgid: "root:300000:1000000\n",
			uidMap: fullMap,
			want:   Host{UID: Range{200000, 1000000}, GID: Range{300000, 1000000}},
		},
		{
			name:   "root entry too small is skipped",
			subuid: "root:100000:1000\nroot:500000:65536\n",
			subgid: "root:500000:65536\n",
			uidMap: fullMap,
			want:   Host{UID: Range{500000, 65536}, GID: Range{500000, 65536}},
		},
		{
			name:   "no files, full kernel map",
			uidMap: fullMap,
			want:   Host{UID: Range{1000000, 1000000000}, GID: Range{1000000, 1000000000}},
		},
		{
			name:   "empty files and no root entry fall back to kernel",
			subuid: "bob:100000:65536\n",
			uidMap: fullMap,
			want:   Host{UID: Range{1000000, 1000000000}, GID: Range{1000000, 1000000000}},
		},
		{
			name:   "inside a user namespace",
			uidMap: "0 1000 1\n1 100000 65536\n100000 200000 300000\n",
			want:   Host{UID: Range{100000, 300000}, GID: Range{100000, 300000}},
		},
		{
			name:   "range straddling 100000 is clipped",
			uidMap: "0 1000000 200000\n",
			want:   Host{UID: Range{100000, 100000}, GID: Range{100000, 100000}},
		},
		{
			name:   "nested without a usable range",
			uidMap: "0 1000000 65536\n",
			err:    ErrHostConfig,
		},
		{
			name:   "half configured shadow",
			subuid: "root:100000:65536\n",
			uidMap: fullMap,
			err:    ErrHostConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HostFrom(tt.subuid, tt.subgid, tt.uidMap, tt.uidMap)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDiscoverHost(t *testing.T) {
	h, err := DiscoverHost()
	if err != nil {
		t.Fatal(err)
	}
	if h.UID.Size < minHostRange || h.GID.Size < minHostRange {
		t.Fatalf("host range too small: %+v", h)
	}
}

func TestAllocateIsolated(t *testing.T) {
	host := Range{Base: 1000000, Size: 1000000000}
	small := Range{Base: 1000000, Size: 65536 * 4}
	tests := []struct {
		name     string
		host     Range
		size     int64
		existing []Range
		want     int64
		errLeft  int64 // -1: no error
	}{
		{"first", host, 65536, nil, 1065536, -1},
		{"second is contiguous", host, 65536, []Range{{1065536, 65536}}, 1131072, -1},
		{"gap is reused", host, 65536, []Range{{1131072, 65536}}, 1065536, -1},
		{"gap too small is skipped", host, 65536, []Range{{1065536 + 1000, 65536}}, 1065536 + 1000 + 65536, -1},
		{"unsorted input", host, 65536, []Range{{1196608, 65536}, {1065536, 65536}}, 1131072, -1},
		{"bigger size", host, 200000, []Range{{1131072, 65536}}, 1196608, -1},
		{"allocations outside the range are ignored", host, 65536, []Range{{0, 1000}, {5, 0}}, 1065536, -1},
		{"exactly fills the end", small, 65536 * 3, nil, 1065536, -1},
		{"exhausted", small, 65536, []Range{{1065536, 65536 * 3}}, 0, 0},
		{"exhausted names largest block", small, 65536, []Range{{1065536 + 100, 65536 * 2}}, 0, 65536 - 100},
		{"too big", small, 65536 * 4, nil, 0, 65536 * 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AllocateIsolated(tt.host, tt.size, tt.existing)
			if tt.errLeft >= 0 {
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("err = %v, want ErrExhausted", err)
				}
				want := fmt.Sprintf("Not enough uid/gid available for the container: %d left", tt.errLeft)
				if err.Error() != want {
					t.Fatalf("err = %q, want %q", err, want)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if _, err := AllocateIsolated(host, 0, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("size 0: err = %v", err)
	}
}

func TestIsolatedSet(t *testing.T) {
	h := Host{UID: Range{100000, 1 << 20}, GID: Range{300000, 1 << 19}}
	if a := h.Allocatable(); a != (Range{100000, 1 << 19}) {
		t.Fatalf("allocatable %+v", a)
	}
	got := h.Isolated(165536, 65536)
	want := Set{
		{Isuid: true, Hostid: 165536, Nsid: 0, Maprange: 65536},
		{Isgid: true, Hostid: 365536, Nsid: 0, Maprange: 65536},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if id, ok := got.HostID(false, 5); !ok || id != 365541 {
		t.Fatalf("HostID gid 5 = %d %v", id, ok)
	}
	if _, ok := got.HostID(true, 65536); ok {
		t.Fatal("HostID beyond the map succeeded")
	}
}

func TestJSON(t *testing.T) {
	if got := Set(nil).JSON(); got != "[]" {
		t.Fatalf("nil set = %s", got)
	}
	s := Set{{Isuid: true, Hostid: 1000000, Nsid: 0, Maprange: 65536}}
	want := `[{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":65536}]`
	if got := s.JSON(); got != want {
		t.Fatalf("got %s", got)
	}
	back, err := ParseJSON(want)
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("round trip %+v %v", back, err)
	}
	for _, bad := range []string{"{", `[{"Isuid":true,"Maprange":0}]`, `[{"Hostid":1,"Maprange":1}]`} {
		if _, err := ParseJSON(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseJSON(%s) err = %v", bad, err)
		}
	}
	if s, err := ParseJSON(""); err != nil || len(s) != 0 {
		t.Fatalf("empty: %v %v", s, err)
	}
}

func TestParseRaw(t *testing.T) {
	tests := []struct {
		in   string
		want []Entry
		err  string
	}{
		{in: "uid 1000 0", want: []Entry{{Isuid: true, Hostid: 1000, Nsid: 0, Maprange: 1}}},
		{in: "gid 1000-1009 100-109", want: []Entry{{Isgid: true, Hostid: 1000, Nsid: 100, Maprange: 10}}},
		{in: "both 1000 1000\n\n  uid 5-6 7-8  \n", want: []Entry{
			{Isuid: true, Isgid: true, Hostid: 1000, Nsid: 1000, Maprange: 1},
			{Isuid: true, Hostid: 5, Nsid: 7, Maprange: 2},
		}},
		{in: "", want: nil},
		{in: "uid 4294967294 0", want: []Entry{{Isuid: true, Hostid: 4294967294, Maprange: 1}}},
		{in: "uid 1000-1001 0", err: "different sizes"},
		{in: "uid 1000 0 1", err: "3 fields"},
		{in: "uid 1000", err: "3 fields"},
		{in: "user 1000 0", err: "unknown type"},
		{in: "uid -1 0", err: "bad id"},
		{in: "uid 1-2-3 0-1", err: "bad id"},
		{in: "uid 10-5 0-5", err: "ends before"},
		{in: "uid 4294967295 0", err: "bad id"},
		{in: "uid +5 0", err: "bad id"},
		{in: "uid 0x10 0", err: "bad id"},
		{in: "uid 1000 0\ngid x 0", err: "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRaw(tt.in)
			if tt.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrInvalid containing %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestLayer(t *testing.T) {
	host := Host{UID: Range{1000000, 1000000000}, GID: Range{1000000, 1000000000}}
	iso := host.Isolated(1065536, 65536)
	tests := []struct {
		name string
		base Set
		raw  string
		want Set
		err  error
	}{
		{
			name: "map host uid 1000 to container 1000",
			base: iso,
			raw:  "uid 1000 1000",
			want: Set{
				{Isuid: true, Hostid: 1065536, Nsid: 0, Maprange: 1000},
				{Isgid: true, Hostid: 1065536, Nsid: 0, Maprange: 65536},
				{Isuid: true, Hostid: 1000, Nsid: 1000, Maprange: 1},
				{Isuid: true, Hostid: 1066537, Nsid: 1001, Maprange: 64535},
			},
		},
		{
			name: "both at the start",
			base: iso,
			raw:  "both 500-501 0-1",
			want: Set{
				{Isuid: true, Isgid: true, Hostid: 500, Nsid: 0, Maprange: 2},
				{Isuid: true, Hostid: 1065538, Nsid: 2, Maprange: 65534},
				{Isgid: true, Hostid: 1065538, Nsid: 2, Maprange: 65534},
			},
		},
		{
			name: "at the very end",
			base: Set{{Isuid: true, Hostid: 1065536, Maprange: 10}},
			raw:  "uid 7 9",
			want: Set{
				{Isuid: true, Hostid: 1065536, Nsid: 0, Maprange: 9},
				{Isuid: true, Hostid: 7, Nsid: 9, Maprange: 1},
			},
		},
		{
			name: "outside the base map just adds",
			base: Set{{Isuid: true, Hostid: 1065536, Maprange: 10}},
			raw:  "uid 7 100",
			want: Set{
				{Isuid: true, Hostid: 1065536, Nsid: 0, Maprange: 10},
				{Isuid: true, Hostid: 7, Nsid: 100, Maprange: 1},
			},
		},
		{name: "host id is a subordinate id", base: host.Full(), raw: "uid 1000001 1000", err: ErrConflict},
		{name: "gid range reaching into the sub range", base: iso, raw: "gid 999999-1000000 5-6", err: ErrConflict},
		{name: "raw entries overlap", base: iso, raw: "uid 10 10\nboth 11 10", err: ErrConflict},
		{name: "two ns ids to one host id", base: iso, raw: "uid 10 10\nuid 10 11", err: ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := ParseRaw(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Layer(tt.base, raw, host)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// FuzzParseRaw: any input either fails with ErrInvalid or yields valid
// entries that survive a print/parse round trip.
func FuzzParseRaw(f *testing.F) {
	for _, s := range []string{"uid 1000 0", "both 1-2 3-4\ngid 5 6", "uid 1-0 0", "x", "uid 4294967294 0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		es, err := ParseRaw(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		var b strings.Builder
		for _, e := range es {
			if err := e.valid(); err != nil {
				t.Fatalf("parsed invalid entry %+v: %v", e, err)
			}
			kind := map[[2]bool]string{{true, false}: "uid", {false, true}: "gid", {true, true}: "both"}[[2]bool{e.Isuid, e.Isgid}]
			fmt.Fprintf(&b, "%s %d-%d %d-%d\n", kind, e.Hostid, e.Hostid+e.Maprange-1, e.Nsid, e.Nsid+e.Maprange-1)
		}
		again, err := ParseRaw(b.String())
		if err != nil || !reflect.DeepEqual(again, es) {
			t.Fatalf("round trip of %q: %+v, %v", in, again, err)
		}
	})
}

func TestFits(t *testing.T) {
	host := Range{Base: 1000000, Size: 1000000}
	taken := []Range{{Base: 1131072, Size: 65536}, {Base: 1300000, Size: 0}}
	for _, c := range []struct {
		base, size int64
		want       bool
	}{
		{1065536, 65536, true},
		{1065536, 65537, false}, // runs into the taken block
		{1196608, 65536, true},  // right after it
		{1131071, 1, true},
		{1196607, 1, false},
		{1000000, 65536, false}, // the reserved start
		{1934464, 65536, true},  // ends at the host's end
		{1934465, 65536, false},
		{1065536, 0, false},
	} {
		if got := Fits(host, c.base, c.size, taken); got != c.want {
			t.Errorf("Fits(%d, %d) = %v, want %v", c.base, c.size, got, c.want)
		}
	}
}
