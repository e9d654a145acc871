package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
)

// EventOptions selects the events of a listener.
type EventOptions struct {
	// Types are event types (api.EventType*); none means every type the
	// caller may see.
	Types []string
	// AllProjects listens to every project instead of the client's one.
	AllProjects bool
}

// EventListener is a subscription to /1.0/events.
type EventListener struct {
	conn   *websocket.Conn
	events chan api.Event
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// GetEvents subscribes to the event stream. The server subscribes before it
// completes the upgrade, so every event caused after GetEvents returns is
// delivered. The listener runs until ctx ends or Close is called.
func (c *Client) GetEvents(ctx context.Context, opts EventOptions) (*EventListener, error) {
	q := url.Values{}
	if len(opts.Types) > 0 {
		q.Set("type", strings.Join(opts.Types, ","))
	}
	if opts.AllProjects {
		q.Set("all-projects", "true")
	} else if c.project != "" {
		q.Set("project", c.project)
	}
	u, err := c.url("/1.0/events", q)
	if err != nil {
		return nil, err
	}
	hdr := http.Header{"User-Agent": {c.userAgent}}
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: hdr})
	if err != nil {
		// A refused upgrade carries an ordinary error envelope: report
		// the server's reason, not the handshake failure.
		if resp != nil && resp.Body != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if _, envErr := decodeEnvelope(resp); envErr != nil {
				return nil, envErr
			}
		}
		return nil, c.transportError(err)
	}
	// Operation events carry whole operations; the 32 KiB default is
	// too small for a busy one.
	conn.SetReadLimit(16 << 20)
	lctx, cancel := context.WithCancel(ctx)
	l := &EventListener{conn: conn, events: make(chan api.Event, 64), cancel: cancel, done: make(chan struct{})}
	go l.read(lctx)
	return l, nil
}

// Events delivers the events in order; it is closed when the stream ends
// (see Err).
func (l *EventListener) Events() <-chan api.Event { return l.events }

// Err is why the stream ended: nil after Close or the end of the
// listener's context. Valid once Events is closed.
func (l *EventListener) Err() error {
	<-l.done
	return l.err
}

// Close ends the subscription and waits for the reader to stop.
func (l *EventListener) Close() error {
	l.cancel()
	<-l.done
	return nil
}

var errBadFrame = errors.New("event stream: unexpected binary frame")

func (l *EventListener) read(ctx context.Context) {
	defer close(l.done)
	defer close(l.events)
	defer l.conn.CloseNow()
	for {
		typ, buf, err := l.conn.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				l.err = fmt.Errorf("event stream: %w", err)
			}
			return
		}
		if typ != websocket.MessageText {
			l.err = errBadFrame
			return
		}
		var ev api.Event
		if err := json.Unmarshal(buf, &ev); err != nil {
			l.err = fmt.Errorf("event stream: bad event: %w", err)
			return
		}
		select {
		case l.events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// Lifecycle decodes the metadata of a lifecycle event.
func Lifecycle(ev api.Event) (*api.EventLifecycle, error) {
	if ev.Type != api.EventTypeLifecycle {
		return nil, fmt.Errorf("not a lifecycle event (type %q)", ev.Type)
	}
	var lc api.EventLifecycle
	if err := json.Unmarshal(ev.Metadata, &lc); err != nil {
		return nil, err
	}
	return &lc, nil
}
