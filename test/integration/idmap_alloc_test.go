package integration

import (
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

func idmapBase(t *testing.T, d *testdaemon.Daemon, name string) int64 {
	t.Helper()
	var in api.Instance
	d.Do("GET", "/1.0/instances/"+name, nil).Metadata(t, &in)
	b, err := strconv.ParseInt(in.Config["volatile.idmap.base"], 10, 64)
	if err != nil || b <= 0 {
		t.Fatalf("%s: volatile.idmap.base %q", name, in.Config["volatile.idmap.base"])
	}
	return b
}

// TestIDMapAllocationWithRawIdmap: raw.idmap never counts as part of an
// isolated block. A host uid far above the subordinate range (an LDAP
// uid) does not exhaust the range for later containers, and remapping a
// block's last id does not make the block move on unrelated updates.
func TestIDMapAllocationWithRawIdmap(t *testing.T) {
	d, _ := withImage(t)
	// The default profile is isolated: these are isolated containers.
	launch(t, d, "ldap", map[string]string{"raw.idmap": "both 1500000000 1000"})
	// Container uid 1000 is host uid 1500000000.
	if code, out := execOut(t, d, "ldap", "cat", "/proc/self/uid_map"); code != 0 || !hasMapLine(out, 1000, 1500000000, 1) {
		t.Fatalf("raw.idmap not in the running map: %d %q", code, out)
	}
	ldap := idmapBase(t, d, "ldap")
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "second", "source": map[string]string{"type": "image", "alias": "bb"},
	}))
	if second := idmapBase(t, d, "second"); second != ldap+65536 {
		t.Fatalf("second container base %d, want %d (right after the first block)", second, ldap+65536)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "last", "source": map[string]string{"type": "image", "alias": "bb"},
		"config": map[string]string{"raw.idmap": "both 1000 65535"},
	}))
	last := idmapBase(t, d, "last")
	// Free the block below "last": a re-allocation would now move it.
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/second", nil))

	for _, name := range []string{"ldap", "last"} {
		before := idmapBase(t, d, name)
		mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/instances/"+name, map[string]any{"config": map[string]string{"user.note": "unrelated"}}))
		if after := idmapBase(t, d, name); after != before {
			t.Errorf("%s: PATCH of user.note moved volatile.idmap.base %d -> %d", name, before, after)
		}
	}
	mustSucceedOrSync(t, d, d.Do("PATCH", "/1.0/profiles/default", map[string]any{"config": map[string]string{"limits.processes": "500"}}))
	if got := idmapBase(t, d, "last"); got != last {
		t.Errorf("a default profile update moved last's volatile.idmap.base %d -> %d", last, got)
	}
	if got := idmapBase(t, d, "ldap"); got != ldap {
		t.Errorf("a default profile update moved ldap's volatile.idmap.base %d -> %d", ldap, got)
	}
	// The freed block is reused by the next container.
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "third", "source": map[string]string{"type": "image", "alias": "bb"},
	}))
	if third := idmapBase(t, d, "third"); third != ldap+65536 {
		t.Fatalf("third container base %d, want the freed %d", third, ldap+65536)
	}
}

// hasMapLine reports whether a /proc/PID/uid_map text has the line
// "ns host n".
func hasMapLine(m string, ns, host, n int64) bool {
	for _, line := range strings.Split(m, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == strconv.FormatInt(ns, 10) && f[1] == strconv.FormatInt(host, 10) && f[2] == strconv.FormatInt(n, 10) {
			return true
		}
	}
	return false
}
