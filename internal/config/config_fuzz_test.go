package config

import (
	"errors"
	"math"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/internal/errdefs"
)

// refusedNaming fails t unless err is an ErrInvalid whose text quotes
// name, as the API's 400 must.
func refusedNaming(t *testing.T, err error, name string) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("refusal %v is not ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), strconv.Quote(name)) {
		t.Fatalf("refusal %q does not name %q", err, name)
	}
}

// FuzzCheckInstanceKeys: the instance choke point refuses with a 400
// naming the key, and its verdict on a key does not depend on the other
// (valid) keys of the map; an empty value is "unset", so a key refused
// with an empty value is refused with every value.
func FuzzCheckInstanceKeys(f *testing.F) {
	for _, kv := range [][2]string{
		{"security.privileged", "true"}, {"security.nesting", "maybe"},
		{"security.idmap.size", "65536"}, {"security.idmap.size", "0"},
		{"security.idmap.base", "4294967295"}, {"raw.idmap", "both 1000 1000"},
		{"raw.idmap", "uid 1-2 3"}, {"limits.cpu", "2"}, {"limits.cpu", "0-1,3"},
		{"limits.cpu", "+1"}, {"limits.memory", "512MiB"}, {"limits.memory", "50%"},
		{"limits.memory", "101%"}, {"limits.memory", "9EiB"}, {"limits.memory.enforce", "soft"},
		{"limits.processes", "0"}, {"limits.processes", "2147483648"},
		{"security.devlxd", "true"}, {"security.syscalls.deny_default", "on"},
		{"boot.autostart.delay", "1048577"}, {"environment.PATH", "/bin"},
		{"environment.", "x"}, {"environment.A=B", "x"}, {"environment.X", "a\x00b"},
		{"environment.X\t", "tab"}, {"user.note", "free\x00form"}, {"user.", "x"},
		{"image.os", "busybox"}, {"volatile.uuid", "x"}, {"no.such.key", ""},
	} {
		f.Add(kv[0], kv[1])
	}
	online := filepath.Join(f.TempDir(), "online")
	if err := os.WriteFile(online, []byte("0-1,3\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	old := OnlineCPUsFile
	OnlineCPUsFile = online
	f.Cleanup(func() { OnlineCPUsFile = old })
	f.Fuzz(func(t *testing.T, k, v string) {
		err := CheckInstanceKeys(map[string]string{k: v})
		if err != nil {
			refusedNaming(t, err, k)
		}
		other := "boot.autostart"
		if k == other {
			other = "security.nesting"
		}
		err2 := CheckInstanceKeys(map[string]string{k: v, other: "true"})
		if (err == nil) != (err2 == nil) {
			t.Fatalf("%q=%q: alone %v, beside a valid key %v", k, v, err, err2)
		}
		if v != "" && CheckInstanceKeys(map[string]string{k: ""}) != nil && err == nil {
			t.Fatalf("%q refused unset but accepted with %q", k, v)
		}
	})
}

// FuzzCheckDevices: a refused device gets a 400 naming it; an accepted
// one holds only clean absolute paths and no control characters, and an
// instance made of it (and a root disk, unless it is one) passes the
// expanded check: no device the check lets through is refused later.
func FuzzCheckDevices(f *testing.F) {
	type seed struct{ name, typ, k1, v1, k2, v2, k3, v3 string }
	for _, s := range []seed{
		{"root", "disk", "path", "/", "pool", "default", "", ""},
		{"root", "disk", "path", "/", "pool", "default", "readonly", "true"},
		{"root", "disk", "path", "/", "", "", "", ""},
		{"data", "disk", "path", "/mnt", "source", "/srv", "readonly", "yes"},
		{"data", "disk", "path", "/mnt/", "source", "/srv", "", ""},
		{"data", "disk", "path", "/mnt", "source", "srv", "", ""},
		{"data", "disk", "path", "/mnt", "source", "/srv", "pool", "p"},
		{"data", "disk", "path", "/mnt", "source", "/srv", "size", "1GiB"},
		{"tty", "unix-char", "source", "/dev/tty", "mode", "0660", "", ""},
		{"tty", "unix-char", "path", "/dev/x", "major", "4", "minor", "1"},
		{"tty", "unix-char", "path", "/dev/x", "major", "4096", "minor", "1"},
		{"tty", "unix-char", "path", "/dev/x", "major", "4", "", ""},
		{"blk", "unix-block", "path", "/", "major", "8", "minor", "0"},
		{"blk", "unix-block", "source", "/dev/sda", "uid", "4294967295", "", ""},
		{"blk", "unix-block", "source", "/dev/sda", "mode", "1777", "", ""},
		{"blk", "unix-block", "source", "/dev/../etc/shadow", "", "", "", ""},
		{"eth0", "nic", "", "", "", "", "", ""},
		{"x", "", "", "", "", "", "", ""},
		{"a/b", "disk", "path", "/mnt", "source", "/srv", "", ""},
		{"ctl\x01", "disk", "path", "/mnt", "source", "/srv", "", ""},
		{"data", "disk", "path", "/mnt\n", "source", "/srv", "", ""},
		{"", "disk", "path", "/mnt", "source", "/srv", "", ""},
	} {
		f.Add(s.name, s.typ, s.k1, s.v1, s.k2, s.v2, s.k3, s.v3)
	}
	f.Fuzz(func(t *testing.T, name, typ, k1, v1, k2, v2, k3, v3 string) {
		dev := map[string]string{"type": typ}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			if kv[0] != "" {
				dev[kv[0]] = kv[1]
			}
		}
		devs := map[string]map[string]string{name: dev}
		err := CheckDevices(devs)
		if err != nil {
			refusedNaming(t, err, name)
			return
		}
		for k, v := range dev {
			if hasControl(v) {
				t.Fatalf("accepted %s=%q with a control character", k, v)
			}
			if (k == "path" || k == "source") && v != "" && (!strings.HasPrefix(v, "/") || path.Clean(v) != v) {
				t.Fatalf("accepted %s=%q, not a clean absolute path", k, v)
			}
		}
		if dev["type"] != DeviceDisk || dev["path"] != "/" {
			root := "root"
			if name == root {
				root = "root0"
			}
			devs[root] = map[string]string{"type": DeviceDisk, "path": "/", "pool": "default"}
		}
		if err := CheckExpanded(nil, devs); err != nil {
			t.Fatalf("device %q accepted by CheckDevices, refused in an instance: %v", name, err)
		}
	})
}

var byteSizeRE = regexp.MustCompile(`^([0-9]+)(B|kB|MB|GB|TB|PB|EB|KiB|MiB|GiB|TiB|PiB|EiB)?$`)

// FuzzParseByteSize: an accepted size is exactly number x unit (no
// wrap-around), fits the int64 every consumer converts it to, and its
// decimal form parses back to it; limits.memory then holds it between
// MinMemory and MaxMemory, or takes a whole percentage from 1 to 100.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"0", "4096", "512MiB", "1GB", "10kB", "7B", "1EiB", "7EiB", "8EiB",
		"15EiB", "16EiB", "9223372036854775807", "9223372036854775808", "18446744073709551615",
		"18446744073709551616", "", "MiB", "1.5GiB", "-1", "+1", "5XB", "1 GiB", "1kb", "0x10",
		"50%", "100%", "0%", "101%", "+5%", "%", "4MiB", "3MiB"} {
		f.Add(s)
	}
	maxInt64 := new(big.Int).SetUint64(math.MaxInt64)
	f.Fuzz(func(t *testing.T, v string) {
		n, err := ParseByteSize(v)
		if err == nil {
			m := byteSizeRE.FindStringSubmatch(v)
			if m == nil {
				t.Fatalf("accepted %q: not a number with a known unit", v)
			}
			want, _ := new(big.Int).SetString(m[1], 10)
			want.Mul(want, new(big.Int).SetUint64(byteUnits[m[2]]))
			if want.Cmp(new(big.Int).SetUint64(n)) != 0 {
				t.Fatalf("%q = %d, want %s", v, n, want)
			}
			if want.Cmp(maxInt64) > 0 {
				t.Fatalf("accepted %q = %d, beyond int64", v, n)
			}
			if back, err := ParseByteSize(strconv.FormatUint(n, 10)); err != nil || back != n {
				t.Fatalf("%q = %d does not round-trip: %d, %v", v, n, back, err)
			}
		}
		if (ByteSize(v) == nil) != (err == nil) {
			t.Fatalf("ByteSize and ParseByteSize disagree on %q", v)
		}
		if LimitsMemory(v) != nil {
			if v != "" { // empty is unset, which the choke point accepts
				refusedNaming(t, Instance.Check(map[string]string{"limits.memory": v}), "limits.memory")
			}
			return
		}
		if p, ok := strings.CutSuffix(v, "%"); ok {
			pct, err := strconv.Atoi(p)
			if err != nil || pct < 1 || pct > 100 {
				t.Fatalf("limits.memory accepted %q", v)
			}
			return
		}
		if err != nil || n < MinMemory || n > MaxByteSize {
			t.Fatalf("limits.memory accepted %q = %d, %v", v, n, err)
		}
	})
}

// cpusetGrammar is what the lxc driver accepts for limits.cpu at start
// (internal/instance/lxc's cpusetRE): a value the config check accepts
// must pass it, or the instance is stored and then cannot start.
var cpusetGrammar = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// FuzzLimitsCPU, against a host whose online CPUs are 0, 1 and 3: an
// accepted count is from 1 to 3, an accepted set names only those CPUs,
// and everything accepted is in the driver's grammar.
func FuzzLimitsCPU(f *testing.F) {
	for _, s := range []string{"1", "3", "4", "0", "-1", "+1", "01", "0-1", "0,3", "1,3", "0-3",
		"2,3", "3-1", "0,", ",", "0-", "-", "0--1", "1-1", "0-99999999", "0-65536", "+0-1",
		" 1", "1 ", "0x1", "3,3,3", strings.Repeat("0-65536,", 8) + "0"} {
		f.Add(s)
	}
	online := filepath.Join(f.TempDir(), "online")
	if err := os.WriteFile(online, []byte("0-1,3\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	old := OnlineCPUsFile
	OnlineCPUsFile = online
	f.Cleanup(func() { OnlineCPUsFile = old })
	isOnline := map[int]bool{0: true, 1: true, 3: true}
	f.Fuzz(func(t *testing.T, v string) {
		if err := LimitsCPU(v); err != nil {
			if v != "" {
				refusedNaming(t, Instance.Check(map[string]string{"limits.cpu": v}), "limits.cpu")
			}
			return
		}
		if !cpusetGrammar.MatchString(v) {
			t.Fatalf("accepted %q, which the driver refuses at start", v)
		}
		if !strings.ContainsAny(v, ",-") {
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 3 {
				t.Fatalf("accepted CPU count %q", v)
			}
			return
		}
		for _, part := range strings.Split(v, ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if isRange {
				b, _ = strconv.Atoi(hi)
			}
			if b < a || b-a > 3 {
				t.Fatalf("accepted %q: element %q is no range of online CPUs", v, part)
			}
			for c := a; c <= b; c++ {
				if !isOnline[c] {
					t.Fatalf("accepted %q naming offline CPU %d", v, c)
				}
			}
		}
	})
}

// TestLimitsCPUBoundedWork: a limits.cpu value as large as a request body
// may carry, every element the widest range, is refused without the check
// expanding it (131072 ranges of 65537 CPUs would be 68 GB of ints: an
// authenticated client could make the daemon run out of memory).
func TestLimitsCPUBoundedWork(t *testing.T) {
	online := filepath.Join(t.TempDir(), "online")
	if err := os.WriteFile(online, []byte("0-1,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := OnlineCPUsFile
	OnlineCPUsFile = online
	t.Cleanup(func() { OnlineCPUsFile = old })
	v := strings.Repeat("0-65536,", 1<<17) + "0"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := Instance.Check(map[string]string{"limits.cpu": v})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "CPU 2 ") {
		t.Fatalf("huge set: %.200v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Fatalf("checking a %d-byte limits.cpu allocated %d bytes", len(v), got)
	}
	// The legitimate path: a long set of online CPUs is accepted.
	if err := LimitsCPU(strings.Repeat("0-1,3,", 1<<15) + "1"); err != nil {
		t.Fatal(err)
	}
}
