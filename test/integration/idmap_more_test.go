package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// hostIDMap reads the uid_map or gid_map of a running instance's init as
// the host sees it, into host [start, end) ranges: the map the kernel
// enforces, whatever the daemon has recorded since.
func hostIDMap(t *testing.T, d *testdaemon.Daemon, name, file string) [][2]int64 {
	t.Helper()
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/"+name+"/state", nil).Metadata(t, &st)
	if st.Pid <= 0 {
		t.Fatalf("%s has no init pid (status %s)", name, st.Status)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", st.Pid, file))
	if err != nil {
		t.Fatalf("%s of %s: %v", file, name, err)
	}
	return uidRanges(t, string(b))
}

// idmapEntry is one entry of a volatile.idmap.* value.
type idmapEntry struct {
	Isuid, Isgid     bool
	Hostid, Maprange int64
}

// overlap returns the first pair of ranges of a and b sharing an id.
func overlap(a, b [][2]int64) ([2]int64, [2]int64, bool) {
	for _, x := range a {
		for _, y := range b {
			if x[0] < y[1] && y[0] < x[1] {
				return x, y, true
			}
		}
	}
	return [2]int64{}, [2]int64{}, false
}

// recordedBlock is an instance's isolated block as its config records it:
// [volatile.idmap.base, base+expanded security.idmap.size).
func recordedBlock(t *testing.T, d *testdaemon.Daemon, name string) [2]int64 {
	t.Helper()
	var in api.Instance
	d.Do("GET", "/1.0/instances/"+name, nil).Metadata(t, &in)
	base, err := strconv.ParseInt(in.Config["volatile.idmap.base"], 10, 64)
	if err != nil || base <= 0 {
		t.Fatalf("%s: volatile.idmap.base %q", name, in.Config["volatile.idmap.base"])
	}
	size := int64(65536)
	if v := in.ExpandedConfig["security.idmap.size"]; v != "" {
		if size, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("%s: security.idmap.size %q", name, v)
		}
	}
	return [2]int64{base, base + size}
}

// TestIDMapConcurrentIsolatedAllocation: six isolated instances of
// different sizes created at once (three also started) get pairwise
// disjoint blocks, recorded and, for the running ones, in force.
func TestIDMapConcurrentIsolatedAllocation(t *testing.T) {
	d, _ := withImage(t)
	sizes := []int64{65536, 131072, 70000, 3 * 65536, 100000, 65537}
	type result struct {
		create testdaemon.Result
		op     api.Operation
		err    error
	}
	results := make([]result, len(sizes))
	var wg sync.WaitGroup
	for i, size := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.create = d.Do("POST", "/1.0/instances", map[string]any{
				"name": fmt.Sprintf("con%d", i), "source": map[string]string{"type": "image", "alias": "bb"},
				"config": map[string]string{"security.idmap.size": strconv.FormatInt(size, 10)},
				"start":  i%2 == 0,
			})
			if r.create.Status != 202 {
				return
			}
			var op api.Operation
			if r.err = json.Unmarshal(r.create.Body.Metadata, &op); r.err != nil {
				return
			}
			w := d.Do("GET", "/1.0/operations/"+op.ID+"/wait?timeout=120", nil)
			r.err = json.Unmarshal(w.Body.Metadata, &r.op)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.create.Status != 202 || r.err != nil || r.op.Status != "Success" {
			t.Fatalf("con%d: create %d %s, operation %q %s (%v)", i, r.create.Status, r.create.Body.Error, r.op.Status, r.op.Err, r.err)
		}
	}

	blocks := make([][2]int64, len(sizes))
	for i, size := range sizes {
		name := fmt.Sprintf("con%d", i)
		in := gapInstance(t, d, name)
		if in.ExpandedConfig["security.idmap.isolated"] != "true" {
			t.Fatalf("%s is not isolated: %v", name, in.ExpandedConfig)
		}
		blocks[i] = recordedBlock(t, d, name)
		if blocks[i][1]-blocks[i][0] != size {
			t.Fatalf("%s: block %v, want %d ids", name, blocks[i], size)
		}
		var next []idmapEntry
		if err := json.Unmarshal([]byte(in.Config["volatile.idmap.next"]), &next); err != nil || len(next) != 2 {
			t.Fatalf("%s: volatile.idmap.next %q (%v)", name, in.Config["volatile.idmap.next"], err)
		}
		for _, e := range next {
			if e.Isuid && (e.Hostid != blocks[i][0] || e.Maprange != size) {
				t.Fatalf("%s: volatile.idmap.next %q does not match base %d size %d", name, in.Config["volatile.idmap.next"], blocks[i][0], size)
			}
		}
	}
	for i := range blocks {
		for j := i + 1; j < len(blocks); j++ {
			if blocks[i][0] == blocks[j][0] {
				t.Errorf("con%d and con%d share volatile.idmap.base %d", i, j, blocks[i][0])
			}
			if a, b, ok := overlap(blocks[i:i+1], blocks[j:j+1]); ok {
				t.Errorf("con%d %v and con%d %v overlap", i, a, j, b)
			}
		}
	}

	// The kernel's view of the running ones.
	for _, file := range []string{"uid_map", "gid_map"} {
		maps := map[int][][2]int64{}
		for i := 0; i < len(sizes); i += 2 {
			maps[i] = hostIDMap(t, d, fmt.Sprintf("con%d", i), file)
		}
		if u := maps[0]; file == "uid_map" && (len(u) != 1 || u[0] != blocks[0]) {
			t.Errorf("con0 %s %v, recorded block %v", file, u, blocks[0])
		}
		for i := range maps {
			if got := maps[i]; len(got) != 1 || got[0][1]-got[0][0] != sizes[i] {
				t.Errorf("con%d %s %v, want one range of %d ids", i, file, got, sizes[i])
			}
			for j := range maps {
				if i < j {
					if a, b, ok := overlap(maps[i], maps[j]); ok {
						t.Errorf("running con%d and con%d %s overlap: %v and %v", i, j, file, a, b)
					}
				}
			}
		}
	}
}

// TestIsolatedMapsDisjointUIDAndGID: two containers of the default profile
// share neither host uids nor host gids (the kernel's maps, not only the
// recorded bases), and neither maps a host id below the subordinate range.
func TestIsolatedMapsDisjointUIDAndGID(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "pair1", nil)
	launch(t, d, "pair2", nil)
	for _, file := range []string{"uid_map", "gid_map"} {
		m1, m2 := hostIDMap(t, d, "pair1", file), hostIDMap(t, d, "pair2", file)
		for name, m := range map[string][][2]int64{"pair1": m1, "pair2": m2} {
			if len(m) != 1 || m[0][1]-m[0][0] != 65536 || m[0][0] < 100000 {
				t.Fatalf("%s %s: %v, want one block of 65536 host ids above the system range", name, file, m)
			}
		}
		if a, b, ok := overlap(m1, m2); ok {
			t.Fatalf("%s of the two default-profile containers overlap: %v and %v", file, a, b)
		}
		// The container's own view agrees with the host's.
		_, inside := execOut(t, d, "pair1", "cat", "/proc/self/"+file)
		if r := uidRanges(t, inside); len(r) != 1 || r[0] != m1[0] {
			t.Fatalf("pair1 %s inside %q, host sees %v", file, inside, m1)
		}
	}
}

// TestRunningIDMapNotReallocated: while an isolated container runs, the
// host ids its kernel map holds are given to no other isolated container,
// whatever its config (or its profile) is changed to meanwhile. The daemon
// may refuse the change or defer it to the next start; either way a
// container created and started afterwards must not share ids with the
// running one. A shrunk block matters as much as a moved one: the ids cut
// off its end are still in the running map.
func TestRunningIDMapNotReallocated(t *testing.T) {
	d, _ := withImage(t)
	cases := []struct {
		name, key, value string
		wall             bool   // a stopped neighbour right after run1's block, so it cannot grow in place
		profile          bool   // the change is made to the default profile
		run2Size         string // security.idmap.size of run2, small enough for a cut-off tail
		freeze           bool   // run1 is frozen when the change is made: its ids are still held
	}{
		{name: "isolated-off", key: "security.idmap.isolated", value: "false"},
		{name: "size-grown", key: "security.idmap.size", value: "131072", wall: true},
		{name: "size-shrunk", key: "security.idmap.size", value: "60000", run2Size: "5000"},
		{name: "base-moved", key: "security.idmap.base"},
		{name: "frozen-base-moved", key: "security.idmap.base", freeze: true},
		{name: "profile-size-shrunk", key: "security.idmap.size", value: "5000", profile: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := "/1.0/instances/run1"
			if tc.profile {
				target = "/1.0/profiles/default"
				// Runs after the instances are gone.
				t.Cleanup(func() {
					mustSucceedOrSync(t, d, d.Do("PATCH", target, map[string]any{"config": map[string]string{tc.key: ""}}))
				})
			}
			// The next case reuses the names and the freed blocks.
			t.Cleanup(func() {
				for _, n := range []string{"run1", "run2", "wall"} {
					if d.Do("GET", "/1.0/instances/"+n, nil).Status == 200 {
						mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/"+n+"?force=true", nil))
					}
				}
			})
			launch(t, d, "run1", nil)
			u1, g1 := hostIDMap(t, d, "run1", "uid_map"), hostIDMap(t, d, "run1", "gid_map")
			if tc.wall {
				mustSucceed(t, d, gapCreate(d, "wall", nil, nil))
				if w := recordedBlock(t, d, "wall"); w[0] != u1[0][1] {
					t.Fatalf("wall block %v does not follow run1's %v", w, u1)
				}
			}
			if tc.freeze {
				mustSucceed(t, d, d.Do("PUT", "/1.0/instances/run1/state", map[string]any{"action": "freeze"}))
			}
			value := tc.value
			if tc.key == "security.idmap.base" {
				value = strconv.FormatInt(u1[0][0]+100*65536, 10)
			}
			res := d.Do("PATCH", target, map[string]any{"config": map[string]string{tc.key: value}})
			t.Logf("PATCH %s %s=%s with run1 running (frozen %v): %d %q", target, tc.key, value, tc.freeze, res.Status, res.Body.Error)
			switch res.Status {
			case 200:
			case 202:
				mustSucceed(t, d, res)
			case 400:
				// The message names the family of keys, not always the one sent.
				if !strings.Contains(res.Body.Error, "security.idmap") {
					t.Errorf("refusal does not name %s: %q", tc.key, res.Body.Error)
				}
				var cfg struct{ Config map[string]string }
				d.Do("GET", target, nil).Metadata(t, &cfg)
				if got := cfg.Config[tc.key]; got != "" {
					t.Errorf("refused %s stored: %q", tc.key, got)
				}
			default:
				t.Fatalf("PATCH %s: %d %s", tc.key, res.Status, res.Raw)
			}

			var cfg map[string]string
			if tc.run2Size != "" {
				cfg = map[string]string{"security.idmap.size": tc.run2Size}
			}
			launch(t, d, "run2", cfg)
			u2, g2 := hostIDMap(t, d, "run2", "uid_map"), hostIDMap(t, d, "run2", "gid_map")
			if a, b, ok := overlap(u1, u2); ok {
				t.Errorf("run2's uid map %v overlaps the running run1's %v (after %s=%s)", b, a, tc.key, value)
			}
			if a, b, ok := overlap(g1, g2); ok {
				t.Errorf("run2's gid map %v overlaps the running run1's %v (after %s=%s)", b, a, tc.key, value)
			}
			// run1's kernel map is still the one it started with.
			if now := hostIDMap(t, d, "run1", "uid_map"); len(now) != 1 || now[0] != u1[0] {
				t.Errorf("run1's running uid map changed from %v to %v", u1, now)
			}
			// Once restarted, a grown isolated block takes what it was
			// given, and that is still disjoint from run2's.
			if tc.name == "size-grown" && res.Status != 400 {
				mustSucceed(t, d, d.Do("PUT", "/1.0/instances/run1/state", map[string]any{"action": "restart", "force": true}))
				after := hostIDMap(t, d, "run1", "uid_map")
				if len(after) != 1 || after[0][1]-after[0][0] != 131072 {
					t.Errorf("run1 after restart: uid map %v, want 131072 ids", after)
				}
				if a, b, ok := overlap(after, u2); ok {
					t.Errorf("restarted run1 %v overlaps the running run2 %v", a, b)
				}
			}
		})
	}
}

// TestIDMapExhaustionThroughAPI: when the host range has fewer free ids
// left than an isolated container asks for, the create is refused with
// the number of ids left, and leaves no instance and no storage behind;
// an update that would need more ids than are left is refused the same
// way and changes nothing.
func TestIDMapExhaustionThroughAPI(t *testing.T) {
	d, _ := withImage(t)
	// The host range, from the full map a non-isolated instance records.
	mustSucceed(t, d, gapCreate(d, "probe", map[string]string{"security.idmap.isolated": "false"}, nil))
	var full []idmapEntry
	if err := json.Unmarshal([]byte(gapInstance(t, d, "probe").Config["volatile.idmap.next"]), &full); err != nil || len(full) != 2 {
		t.Fatalf("probe's volatile.idmap.next: %v %v", full, err)
	}
	mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/probe", nil))
	hostBase, hostSize := int64(-1), int64(1<<62)
	for _, e := range full {
		if e.Isuid {
			hostBase = e.Hostid
		}
		hostSize = min(hostSize, e.Maprange)
	}
	const left = 1000
	// The first isolated block starts 64Ki into the range.
	bigSize := hostSize - 65536 - left
	mustSucceed(t, d, gapCreate(d, "big", map[string]string{"security.idmap.size": strconv.FormatInt(bigSize, 10)}, nil))
	if b := recordedBlock(t, d, "big"); b[0] != hostBase+65536 || b[1] != hostBase+hostSize-left {
		t.Fatalf("big's block %v, want [%d, %d)", b, hostBase+65536, hostBase+hostSize-left)
	}

	refused := func(what string, res testdaemon.Result) {
		t.Helper()
		msg := res.Body.Error
		switch {
		case res.Status == 202:
			op := wait(t, d, res)
			if op.Status == "Success" {
				t.Fatalf("%s: succeeded with %d ids left", what, left)
			}
			msg = op.Err
		case res.Status < 400 || res.Status >= 500:
			t.Fatalf("%s: %d %s", what, res.Status, res.Raw)
		}
		t.Logf("%s: %d %q", what, res.Status, msg)
		if !strings.Contains(msg, "left") || !strings.Contains(msg, strconv.Itoa(left)) {
			t.Fatalf("%s: the error does not say that %d ids are left: %q", what, left, msg)
		}
	}
	refused("create of a default-size isolated container", gapCreate(d, "late", nil, nil))
	if r := d.Do("GET", "/1.0/instances/late", nil); r.Status != 404 {
		t.Fatalf("the refused create left an instance: %d", r.Status)
	}
	entries, _ := os.ReadDir(filepath.Join(d.Dir, "storage-pools/default/containers"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "late") {
			t.Fatalf("the refused create left storage: %s", e.Name())
		}
	}
	var names []string
	d.Do("GET", "/1.0/instances", nil).Metadata(t, &names)
	if len(names) != 1 {
		t.Fatalf("instances after the refused create: %v", names)
	}

	// What is left still serves a container that fits, and growing that
	// one past what is left is refused and changes nothing.
	mustSucceed(t, d, gapCreate(d, "fits", map[string]string{"security.idmap.size": "500"}, nil))
	before := gapInstance(t, d, "fits")
	refused("growing fits past what is left", d.Do("PATCH", "/1.0/instances/fits", map[string]any{"config": map[string]string{"security.idmap.size": "2000"}}))
	after := gapInstance(t, d, "fits")
	for _, k := range []string{"security.idmap.size", "volatile.idmap.base", "volatile.idmap.next"} {
		if after.Config[k] != before.Config[k] {
			t.Errorf("the refused update changed %s: %q -> %q", k, before.Config[k], after.Config[k])
		}
	}
}
