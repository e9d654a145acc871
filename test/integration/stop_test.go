package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// hangLimit bounds how long these tests wait for something that must not
// hang. It detects a hang; it is not a performance assertion.
const hangLimit = 20 * time.Second

// withStubborn launches name and replaces its init by one that ignores the
// halt signal, so a clean stop without a timeout never ends by itself.
func withStubborn(t *testing.T, d *testdaemon.Daemon, name string) {
	t.Helper()
	launch(t, d, name, nil)
	if r := testdaemon.DoWith(t, d.HTTPClient(), "POST", "/1.0/instances/"+name+"/files?path=/sbin/init", stubbornInit,
		map[string]string{"X-LXD-mode": "0755", "X-LXD-write": "overwrite"}); r.Status != 200 {
		t.Fatalf("installing the stubborn init: %d %s", r.Status, r.Raw)
	}
	if op := gapState(t, d, name, map[string]any{"action": "restart", "force": true}); op.Status != "Success" {
		t.Fatalf("forced restart: %s", op.Err)
	}
}

// startOp sends an async request and returns its operation id.
func startOp(t *testing.T, d *testdaemon.Daemon, method, path string, body any) string {
	t.Helper()
	res := d.Do(method, path, body)
	if res.Status != 202 {
		t.Fatalf("%s %s: want an operation, got %d: %s", method, path, res.Status, res.Raw)
	}
	var op api.Operation
	res.Metadata(t, &op)
	return op.ID
}

// opDone waits (up to hangLimit) for an operation to end.
func opDone(t *testing.T, d *testdaemon.Daemon, id string) api.Operation {
	t.Helper()
	var op api.Operation
	d.Do("GET", "/1.0/operations/"+id+"/wait?timeout="+
		strings.TrimSuffix(hangLimit.String(), "s"), nil).Metadata(t, &op)
	if op.Status != "Success" && op.Status != "Failure" {
		t.Fatalf("operation %s (%s) still %s after %s", id, op.Description, op.Status, hangLimit)
	}
	return op
}

// within runs f and fails the test if it has not returned within hangLimit.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(hangLimit):
		t.Fatalf("%s hangs (no answer within %s)", what, hangLimit)
	}
}

// waitingStop sends a clean stop without a timeout (what `lxc stop` sends)
// to a stubborn instance and waits until the daemon is in it.
func waitingStop(t *testing.T, d *testdaemon.Daemon, name string) string {
	t.Helper()
	id := startOp(t, d, "PUT", "/1.0/instances/"+name+"/state", map[string]any{"action": "stop", "timeout": -1})
	time.Sleep(300 * time.Millisecond)
	var op api.Operation
	d.Do("GET", "/1.0/operations/"+id, nil).Metadata(t, &op)
	if op.Status != "Running" {
		t.Fatalf("the clean stop of a stubborn init ended by itself: %s %q", op.Status, op.Err)
	}
	return id
}

// TestForcedStopCutsShortAWaitingCleanStop: a clean stop with no timeout
// of an init that ignores the halt signal waits for ever, as in LXD; while
// it waits, listing and reading the instance still answer, and a forced
// stop (or a forced delete) does not queue behind it: it kills the
// container, both operations end, and the stop is reported once.
func TestForcedStopCutsShortAWaitingCleanStop(t *testing.T) {
	d, _ := withImage(t)
	withStubborn(t, d, "hang")
	ev := dialEvents(t, d, "?type=lifecycle")
	clean := waitingStop(t, d, "hang")

	within(t, "GET /1.0/instances?recursion=2 during a clean stop", func() {
		var list []api.InstanceFull
		d.Do("GET", "/1.0/instances?recursion=2", nil).Metadata(t, &list)
		if len(list) != 1 || list[0].State == nil || list[0].State.Status != "Running" {
			t.Errorf("list during the clean stop: %+v", list)
		}
	})
	within(t, "exec during a clean stop", func() {
		if code, _ := execOut(t, d, "hang", "true"); code != 0 {
			t.Errorf("exec during the clean stop: %d", code)
		}
	})

	force := startOp(t, d, "PUT", "/1.0/instances/hang/state", map[string]any{"action": "stop", "force": true})
	if op := opDone(t, d, force); op.Status != "Success" {
		t.Fatalf("forced stop: %s", op.Err)
	}
	if op := opDone(t, d, clean); op.Status != "Success" {
		t.Fatalf("the clean stop cut short: %s", op.Err)
	}
	if s := gapStatus(t, d, "hang"); s != "Stopped" {
		t.Fatalf("after the forced stop: %s", s)
	}
	var in api.Instance
	d.Do("GET", "/1.0/instances/hang", nil).Metadata(t, &in)
	if p := in.Config["volatile.last_state.power"]; p != "STOPPED" {
		t.Fatalf("power state %q", p)
	}
	// One stop event, and it says the container was stopped, not shut down.
	e := nextEvent(t, ev, func(e api.Event) bool {
		var lc api.EventLifecycle
		return json.Unmarshal(e.Metadata, &lc) == nil && strings.HasPrefix(lc.Action, "instance-s") && lc.Action != "instance-started"
	})
	var lc api.EventLifecycle
	_ = json.Unmarshal(e.Metadata, &lc)
	if lc.Action != "instance-stopped" {
		t.Fatalf("stop event %q", lc.Action)
	}
	mustSucceed(t, d, d.Do("PUT", "/1.0/instances/hang/state", map[string]any{"action": "start"}))
	e = nextEvent(t, ev, func(e api.Event) bool {
		var lc api.EventLifecycle
		return json.Unmarshal(e.Metadata, &lc) == nil && strings.HasPrefix(lc.Action, "instance-s")
	})
	_ = json.Unmarshal(e.Metadata, &lc)
	if lc.Action != "instance-started" {
		t.Fatalf("a second stop event before the start: %q", lc.Action)
	}

	// A forced delete cuts a waiting clean stop short too.
	clean = waitingStop(t, d, "hang")
	del := startOp(t, d, "DELETE", "/1.0/instances/hang?force=true", nil)
	if op := opDone(t, d, del); op.Status != "Success" {
		t.Fatalf("forced delete: %s", op.Err)
	}
	opDone(t, d, clean)
	if r := d.Do("GET", "/1.0/instances/hang", nil); r.Status != 404 {
		t.Fatalf("after the forced delete: %d", r.Status)
	}
}

// TestStopFrozen: a frozen container stops, cleanly (it is thawed so init
// can handle the halt signal) or forced, and starts again afterwards.
func TestStopFrozen(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "ice", nil)
	mon := monitorCgroup(t, d, "ice")
	payload := "lxc.payload." + strings.TrimPrefix(mon, "lxc.monitor.")
	for _, stop := range []map[string]any{
		{"action": "stop", "timeout": 30},
		{"action": "stop", "force": true},
		{"action": "stop", "timeout": -1},
	} {
		mustSucceed(t, d, d.Do("PUT", "/1.0/instances/ice/state", map[string]any{"action": "freeze"}))
		if s := gapStatus(t, d, "ice"); s != "Frozen" {
			t.Fatalf("after freeze: %s", s)
		}
		id := startOp(t, d, "PUT", "/1.0/instances/ice/state", stop)
		if op := opDone(t, d, id); op.Status != "Success" {
			t.Fatalf("%v of a frozen container: %s", stop, op.Err)
		}
		if s := gapStatus(t, d, "ice"); s != "Stopped" {
			t.Fatalf("%v of a frozen container: %s", stop, s)
		}
		if left := append(lxcCgroupDirs(t, mon), lxcCgroupDirs(t, payload)...); len(left) != 0 {
			t.Fatalf("cgroups left after %v of a frozen container: %v", stop, left)
		}
		mustSucceed(t, d, d.Do("PUT", "/1.0/instances/ice/state", map[string]any{"action": "start"}))
		if code, _ := execOut(t, d, "ice", "true"); code != 0 {
			t.Fatalf("exec after restarting: %d", code)
		}
	}
}
