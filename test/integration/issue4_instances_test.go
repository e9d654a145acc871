package integration

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

func gapInstance(t *testing.T, d *testdaemon.Daemon, name string) api.Instance {
	t.Helper()
	var inst api.Instance
	if r := d.Do("GET", "/1.0/instances/"+name, nil); r.Status != 200 {
		t.Fatalf("GET %s: %d %s", name, r.Status, r.Raw)
	} else {
		r.Metadata(t, &inst)
	}
	return inst
}

func gapStatus(t *testing.T, d *testdaemon.Daemon, name string) string {
	t.Helper()
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/"+name+"/state", nil).Metadata(t, &st)
	return st.Status
}

func gapState(t *testing.T, d *testdaemon.Daemon, name string, body map[string]any) api.Operation {
	t.Helper()
	return wait(t, d, d.Do("PUT", "/1.0/instances/"+name+"/state", body))
}

// TestInstancePutReplaces: PUT replaces config, devices and profiles as a
// whole (what it omits is gone); a bad PUT is a 400 that changes nothing.
func TestInstancePutReplaces(t *testing.T) {
	d, _ := withImage(t)
	src := t.TempDir()
	if r := d.Do("POST", "/1.0/profiles", map[string]any{"name": "gp", "config": map[string]string{"user.from-profile": "yes"}}); r.Status != 201 {
		t.Fatalf("profile: %d %s", r.Status, r.Raw)
	}
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{"name": "put1", "source": map[string]string{"type": "image", "alias": "bb"},
		"config":  map[string]string{"user.a": "1", "limits.processes": "100"},
		"devices": map[string]any{"d1": map[string]string{"type": "disk", "source": src, "path": "/mnt/d1"}}}))
	before := gapInstance(t, d, "put1")

	put := before.InstancePut
	put.Config = map[string]string{"user.b": "2"}
	for k, v := range before.Config {
		if strings.HasPrefix(k, "volatile.") {
			put.Config[k] = v
		}
	}
	put.Devices = map[string]map[string]string{}
	put.Profiles = []string{"default", "gp"}
	if r := d.Do("PUT", "/1.0/instances/put1", put); r.Status != 200 && r.Status != 202 {
		t.Fatalf("PUT: %d %s", r.Status, r.Raw)
	} else if r.Status == 202 {
		mustSucceed(t, d, r)
	}
	after := gapInstance(t, d, "put1")
	if after.Config["user.b"] != "2" || after.Config["user.a"] != "" || after.Config["limits.processes"] != "" {
		t.Fatalf("config after PUT: %v", after.Config)
	}
	if len(after.Devices) != 0 || after.ExpandedDevices["d1"] != nil || after.ExpandedDevices["root"] == nil {
		t.Fatalf("devices after PUT: %v / %v", after.Devices, after.ExpandedDevices)
	}
	if !slices.Equal(after.Profiles, []string{"default", "gp"}) || after.ExpandedConfig["user.from-profile"] != "yes" {
		t.Fatalf("profiles after PUT: %v %v", after.Profiles, after.ExpandedConfig)
	}
	if after.Config["volatile.base_image"] != before.Config["volatile.base_image"] {
		t.Fatalf("PUT lost volatile keys: %v", after.Config)
	}

	for name, mod := range map[string]func(*api.InstancePut){
		"bad key":         func(p *api.InstancePut) { p.Config["bogus.key"] = "1" },
		"missing profile": func(p *api.InstancePut) { p.Profiles = []string{"default", "nope"} },
		"bad device": func(p *api.InstancePut) {
			p.Devices = map[string]map[string]string{"x": {"type": "disk", "path": "/x", "source": "rel"}}
		},
	} {
		p := after.InstancePut
		p.Config = maps.Clone(after.Config)
		mod(&p)
		if r := d.Do("PUT", "/1.0/instances/put1", p); r.Status < 400 || r.Status >= 500 {
			t.Errorf("PUT with %s: %d %s", name, r.Status, r.Raw)
		}
	}
	if again := gapInstance(t, d, "put1"); !maps.Equal(again.Config, after.Config) || len(again.Devices) != 0 || !slices.Equal(again.Profiles, after.Profiles) {
		t.Fatalf("refused PUTs changed the instance: %+v", again.InstancePut)
	}
}

// stubbornInit is an init that catches the halt signals and carries on,
// so a clean stop never finishes.
const stubbornInit = "#!/bin/sh\ntrap 'echo ignoring' PWR TERM\nwhile :; do sleep 1 & wait; done\n"

// TestStopTimeoutAndForce: when a clean stop does not finish within the
// timeout, the operation fails saying so and the instance keeps running
// (LXD's behaviour: no silent escalation to a kill); a forced stop or a
// forced restart then works.
func TestStopTimeoutAndForce(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "stub", nil)
	if r := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/stub/files?path=/sbin/init", stubbornInit,
		map[string]string{"X-LXD-mode": "0755", "X-LXD-write": "overwrite"}); r.Status != 200 {
		t.Fatalf("installing the stubborn init: %d %s", r.Status, r.Raw)
	}
	if op := gapState(t, d, "stub", map[string]any{"action": "restart", "force": true}); op.Status != "Success" {
		t.Fatalf("forced restart: %s", op.Err)
	}
	if code, out := execOut(t, d, "stub", "cat", "/proc/1/cmdline"); code != 0 || !strings.Contains(out, "/sbin/init") {
		t.Fatalf("init after restart: %q", out)
	}
	var before api.InstanceState
	d.Do("GET", "/1.0/instances/stub/state", nil).Metadata(t, &before)

	op := gapState(t, d, "stub", map[string]any{"action": "stop", "timeout": 1})
	if op.Status == "Success" || !strings.Contains(op.Err, "force") {
		t.Fatalf("clean stop of a stubborn init: %s %q", op.Status, op.Err)
	}
	var st api.InstanceState
	d.Do("GET", "/1.0/instances/stub/state", nil).Metadata(t, &st)
	if st.Status != "Running" || st.Pid != before.Pid {
		t.Fatalf("after the timed-out stop: %+v (before pid %d)", st, before.Pid)
	}
	if code, _ := execOut(t, d, "stub", "true"); code != 0 {
		t.Fatal("exec after the timed-out stop")
	}
	// A clean restart runs into the same timeout; a forced one does not.
	if op := gapState(t, d, "stub", map[string]any{"action": "restart", "timeout": 1}); op.Status == "Success" {
		t.Fatal("clean restart of a stubborn init succeeded")
	}
	if op := gapState(t, d, "stub", map[string]any{"action": "restart", "force": true, "timeout": 1}); op.Status != "Success" {
		t.Fatalf("forced restart: %s", op.Err)
	}
	d.Do("GET", "/1.0/instances/stub/state", nil).Metadata(t, &st)
	if st.Status != "Running" || st.Pid == before.Pid {
		t.Fatalf("forced restart: %+v", st)
	}
	if op := gapState(t, d, "stub", map[string]any{"action": "stop", "force": true}); op.Status != "Success" {
		t.Fatalf("forced stop: %s", op.Err)
	}
	if s := gapStatus(t, d, "stub"); s != "Stopped" {
		t.Fatalf("after forced stop: %s", s)
	}
}

// TestLifecycleEventsEveryAction: each instance action emits its
// lifecycle event on /1.0/events with the requestor.
func TestLifecycleEventsEveryAction(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "lc1", nil)
	ev := dialEvents(t, d, "?type=lifecycle")
	expect := func(action, source string) {
		t.Helper()
		e := nextEvent(t, ev, func(e api.Event) bool {
			var lc api.EventLifecycle
			return json.Unmarshal(e.Metadata, &lc) == nil && lc.Action == action
		})
		var lc api.EventLifecycle
		_ = json.Unmarshal(e.Metadata, &lc)
		if lc.Source != source || lc.Requestor == nil || lc.Requestor.Username != "root" || lc.Requestor.Protocol != "unix" {
			t.Errorf("%s: source %q requestor %+v", action, lc.Source, lc.Requestor)
		}
	}
	src := "/1.0/instances/lc1"
	mustSucceed(t, d, d.Do("PATCH", src, map[string]any{"config": map[string]string{"user.x": "1"}}))
	expect("instance-updated", src)
	execOut(t, d, "lc1", "true")
	expect("instance-exec", src)
	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "freeze"}))
	expect("instance-paused", src)
	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "unfreeze"}))
	expect("instance-resumed", src)
	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "restart", "timeout": 10}))
	expect("instance-restarted", src)
	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "stop", "timeout": 10}))
	expect("instance-shutdown", src)
	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "start"}))
	expect("instance-started", src)
	mustSucceed(t, d, d.Do("PUT", src+"/state", map[string]any{"action": "stop", "force": true}))
	expect("instance-stopped", src)
	mustSucceed(t, d, d.Do("POST", src, map[string]string{"name": "lc2"}))
	expect("instance-renamed", "/1.0/instances/lc2")
}

// TestCrashDuringCreates: moatd killed while several creates are in
// flight leaves each instance either complete (listed, startable, exec
// works) or absent without storage or mounts; none is half there.
func TestCrashDuringCreates(t *testing.T) {
	d, _ := withImage(t)
	pool := filepath.Join(d.Dir, "storage-pools/default/containers")
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Errors are expected: the daemon dies under the requests.
			c := d.HTTPClient()
			body := `{"name":"cr` + string(rune('0'+i)) + `","source":{"type":"image","alias":"bb"}}`
			req, _ := newRequest("POST", "/1.0/instances", body)
			if res, err := c.Do(req); err == nil {
				res.Body.Close()
			}
		}()
	}
	// Kill once some creates have finished, so that others are mid-way.
	for range 5000 {
		var done []string
		d.Do("GET", "/1.0/instances", nil).Metadata(t, &done)
		if len(done) >= 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	d.Kill()
	wg.Wait()
	d.Restart()

	var names []string
	d.Do("GET", "/1.0/instances", nil).Metadata(t, &names)
	t.Logf("after the crash: %v", names)
	present := map[string]bool{}
	for _, u := range names {
		present[strings.TrimPrefix(u, "/1.0/instances/")] = true
	}
	for i := range n {
		name := "cr" + string(rune('0'+i))
		matches, _ := filepath.Glob(filepath.Join(pool, "*"+name))
		if !present[name] {
			if len(matches) != 0 {
				t.Errorf("%s: absent but its storage is left: %v", name, matches)
			}
			for _, m := range gapMountsUnder(t, pool) {
				if strings.Contains(m, name) {
					t.Errorf("%s: absent but a mount is left: %s", name, m)
				}
			}
			continue
		}
		if op := gapState(t, d, name, map[string]any{"action": "start"}); op.Status != "Success" {
			t.Errorf("%s: listed but does not start: %s", name, op.Err)
			continue
		}
		if code, out := execOut(t, d, name, "cat", "/etc/passwd"); code != 0 || !strings.Contains(out, "root:") {
			t.Errorf("%s: exec after the crash: %d %q", name, code, out)
		}
	}
	// Nothing in the pool that is not a listed instance (staging dirs
	// included).
	entries, _ := os.ReadDir(pool)
	for _, e := range entries {
		ok := false
		for name := range present {
			ok = ok || strings.HasSuffix(e.Name(), name)
		}
		if !ok {
			t.Errorf("leftover in the pool: %s (mounts %v)", e.Name(), gapMountsUnder(t, filepath.Join(pool, e.Name())))
		}
	}
}

// gapMountsUnder lists the mount points at or below dir.
func gapMountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}
