package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
)

func dialEventsInProcess(t *testing.T, d *Daemon, query string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://moat/1.0/events"+query, &websocket.DialOptions{HTTPClient: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.SocketPath())
		}},
	}})
	if err != nil {
		t.Fatalf("dial events: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	// The subscription is in place once the upgrade has completed.
	return c
}

func readEvent(t *testing.T, c *websocket.Conn) api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, buf, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	var ev api.Event
	if err := json.Unmarshal(buf, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}
