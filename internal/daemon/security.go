package daemon

import (
	"net/http"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/identity"
)

// security publishes a security event (spec 7.1) and logs it.
func (d *Daemon) security(name, level, description string, id *identity.Identity, project string, r *http.Request) {
	ev := api.EventSecurity{Name: name, Level: level, Description: description, Project: project}
	if id != nil {
		ev.Requestor = id.Requestor()
	}
	if r != nil {
		ev.RequestPath = r.URL.Path
		ev.RequestMethod = r.Method
	}
	d.bus.Publish(api.EventTypeSecurity, "", ev.Requestor, ev)
	d.log.Warn("security event", "name", name, "description", description)
}
