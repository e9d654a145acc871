package integration

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

func dialEvents(t *testing.T, d *testdaemon.Daemon, query string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://moat/1.0/events"+query, &websocket.DialOptions{HTTPClient: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.Socket())
		}},
	}})
	if err != nil {
		t.Fatalf("dial events%s: %v", query, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// nextEvent reads events until one matches or 5 s pass.
func nextEvent(t *testing.T, c *websocket.Conn, match func(api.Event) bool) api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, buf, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("no matching event: %v", err)
		}
		var ev api.Event
		if err := json.Unmarshal(buf, &ev); err != nil {
			t.Fatalf("event is not JSON: %s", buf)
		}
		if match(ev) {
			return ev
		}
	}
}

func TestEvents(t *testing.T) {
	d := testdaemon.Start(t)

	life := dialEvents(t, d, "?type=lifecycle")
	logs := dialEvents(t, d, "?type=logging")
	d.Do("POST", "/1.0/projects", api.ProjectsPost{Name: "ev1"})

	ev := nextEvent(t, life, func(api.Event) bool { return true })
	var lc api.EventLifecycle
	_ = json.Unmarshal(ev.Metadata, &lc)
	if ev.Type != "lifecycle" || lc.Action != "project-created" || lc.Source != "/1.0/projects/ev1" {
		t.Fatalf("first lifecycle event = %s %+v", ev.Type, lc)
	}
	if lc.Requestor == nil || lc.Requestor.Username != "root" || lc.Requestor.Protocol != "unix" || lc.Requestor.Address != "@" {
		t.Fatalf("requestor = %+v", lc.Requestor)
	}
	ev = nextEvent(t, logs, func(e api.Event) bool { return e.Type == "logging" })
	var lg api.EventLogging
	_ = json.Unmarshal(ev.Metadata, &lg)
	if lg.Message == "" || lg.Level == "" {
		t.Fatalf("logging event = %+v", lg)
	}

	d.Do("PATCH", "/1.0", map[string]any{"config": map[string]string{"user.e": "1"}})
	ev = nextEvent(t, life, func(api.Event) bool { return true })
	_ = json.Unmarshal(ev.Metadata, &lc)
	if lc.Action != "config-updated" {
		t.Fatalf("config change event = %+v", lc)
	}

	if r := d.Do("GET", "/1.0/events?type=nope", nil); r.Status != 400 || r.Body.Error != `"nope" is not a supported event type` {
		t.Fatalf("bad type: %d %q", r.Status, r.Body.Error)
	}
	if r := d.Do("GET", "/1.0/events?project=missing", nil); r.Status != 404 {
		t.Fatalf("events of a missing project: %d", r.Status)
	}
}
