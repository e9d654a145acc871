package daemon

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
)

// operationEntity is the authorization entity of an operation. Token
// operations are admin-only: their secret mints a certificate.
func operationEntity(op *operation.Operation) authz.Entity {
	return authz.Entity{Type: authz.Operation, Name: op.ID(), Project: op.Project(), AdminOnly: op.Class() == api.OperationClassToken}
}

// requestOperationEntity resolves /1.0/operations/{id}; an unknown id gets
// an entity the handler will answer 404 for.
func (d *Daemon) requestOperationEntity(r *route.Request) authz.Entity {
	op, err := d.ops.Get(r.Var("id"))
	if err != nil {
		return authz.Entity{Type: authz.Operation, Name: r.Var("id"), Project: r.Project}
	}
	return operationEntity(op)
}

func opVisible(id *identity.Identity, op *operation.Operation) bool {
	return authz.Authorize(id, authz.CanView, operationEntity(op)) == nil
}

func (d *Daemon) getOperations(r *route.Request) response.Response {
	if !r.AllProjects {
		if err := d.projectExists(r.Project); err != nil {
			return response.Error(err)
		}
	}
	recursive := r.Recursion() > 0
	groups := map[string][]any{}
	for _, op := range d.ops.List() {
		// Server-level operations show in every project's list (to those
		// allowed to see them), as their events do.
		if !r.AllProjects && op.Project() != r.Project && op.Project() != "" {
			continue
		}
		if !opVisible(r.Identity, op) {
			continue
		}
		v := op.Render(r.Identity)
		key := strings.ToLower(v.Status)
		if recursive {
			groups[key] = append(groups[key], v)
		} else {
			groups[key] = append(groups[key], op.URL())
		}
	}
	return response.Sync(groups, nil)
}

func (d *Daemon) getOperation(r *route.Request) response.Response {
	op, err := d.ops.Get(r.Var("id"))
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(op.Render(r.Identity), nil)
}

func (d *Daemon) deleteOperation(r *route.Request) response.Response {
	op, err := d.ops.Get(r.Var("id"))
	if err != nil {
		return response.Error(err)
	}
	if err := op.Cancel(); err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("operation-cancelled", op.URL(), op.Project(), r.Identity.Requestor(), nil)
	return response.EmptySync()
}

func (d *Daemon) waitOperation(r *route.Request) response.Response {
	op, err := d.ops.Get(r.Var("id"))
	if err != nil {
		return response.Error(err)
	}
	timeout := time.Duration(-1)
	if t := r.Query("timeout"); t != "" {
		n, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return response.Error(errdefs.Invalidf("Invalid timeout %q: must be a number of seconds (-1 waits forever)", t))
		}
		if n >= 0 {
			timeout = time.Duration(n * float64(time.Second))
		}
	}
	op.Wait(r.HTTP.Context(), timeout)
	return response.Sync(op.Render(r.Identity), nil)
}

func (d *Daemon) operationWebsocket(r *route.Request) response.Response {
	op, err := d.ops.Get(r.Var("id"))
	if err != nil {
		return response.Error(err)
	}
	secret := r.Query("secret")
	if secret == "" {
		return response.Error(errdefs.Invalidf("Missing websocket secret"))
	}
	if !op.CheckWebsocketSecret(secret) {
		return response.Error(errdefs.Forbiddenf("Wrong websocket secret"))
	}
	return response.Manual(func(w http.ResponseWriter) error {
		return op.Connect(secret, w, r.HTTP)
	})
}
