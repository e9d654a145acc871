package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/event"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
)

var eventTypes = []string{api.EventTypeLifecycle, api.EventTypeLogging, api.EventTypeOperation, api.EventTypeSecurity}

// privilegedEventTypes need server-wide rights: they may name any project.
var privilegedEventTypes = []string{api.EventTypeLogging, api.EventTypeSecurity}

func (d *Daemon) getEvents(r *route.Request) response.Response {
	id := r.Identity
	serverWide := authz.Authorize(id, authz.CanViewEvents, authz.Entity{Type: authz.Server}) == nil
	var types []string
	if t := r.Query("type"); t != "" {
		for _, typ := range strings.Split(t, ",") {
			typ = strings.TrimSpace(typ)
			if !slices.Contains(eventTypes, typ) {
				return response.Error(errdefs.Invalidf("%q is not a supported event type", typ))
			}
			if slices.Contains(privilegedEventTypes, typ) && !serverWide {
				return response.Error(errdefs.Forbiddenf("Event type %q requires server-wide rights", typ))
			}
			types = append(types, typ)
		}
	} else {
		for _, typ := range eventTypes {
			if serverWide || !slices.Contains(privilegedEventTypes, typ) {
				types = append(types, typ)
			}
		}
	}
	if !r.AllProjects {
		if err := d.projectExists(r.Project); err != nil {
			return response.Error(err)
		}
	}
	filter := eventFilter(id, types, r.Project, r.AllProjects, serverWide)
	return response.Manual(func(w http.ResponseWriter) error {
		return d.streamEvents(w, r.HTTP, filter)
	})
}

// eventFilter decides per event whether the listener gets it.
func eventFilter(id *identity.Identity, types []string, project string, all, serverWide bool) func(*event.Event) bool {
	return func(ev *event.Event) bool {
		if !slices.Contains(types, ev.Type) {
			return false
		}
		if ev.Project != "" && !all && ev.Project != project {
			return false
		}
		if serverWide {
			return true
		}
		if ev.Project != "" && authz.CanViewProject(id, ev.Project) {
			return true
		}
		// Anyone may see what they caused themselves.
		rq := ev.Requestor
		return rq != nil && rq.Username == id.Username && rq.Protocol == id.Protocol
	}
}

func (d *Daemon) streamEvents(w http.ResponseWriter, r *http.Request, filter func(*event.Event) bool) error {
	// Subscribe before the upgrade completes so no event between the
	// client's request and its first read is lost.
	l := d.bus.Subscribe(filter)
	defer d.bus.Unsubscribe(l)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	ctx := c.CloseRead(context.Background())
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case ev := <-l.C:
			buf, err := json.Marshal(ev.Event)
			if err != nil {
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = c.Write(wctx, websocket.MessageText, buf)
			cancel()
			if err != nil {
				return nil
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				return nil
			}
		case <-l.Done():
			c.Close(websocket.StatusGoingAway, "event stream closed")
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
