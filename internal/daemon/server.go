package daemon

import (
	"context"
	"maps"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

// apiExtensions lists only what Moat implements: clients switch behaviour
// on these names.
var apiExtensions = []string{
	"etag",
	"patch",
	"projects",
	"event_lifecycle",
	"event_lifecycle_requestor",
	"event_lifecycle_requestor_address",
	"operation_wait",
}

func getRoot(*route.Request) response.Response {
	return response.Sync([]string{"/1.0"}, nil)
}

func (d *Daemon) getServer(r *route.Request) response.Response {
	id := r.Identity
	base := api.ServerUntrusted{
		APIExtensions: apiExtensions, APIStatus: "stable", APIVersion: "1.0",
		Auth: "untrusted", AuthMethods: []string{"tls"}, ClientCertificate: id.ClientCertificate,
	}
	if !id.Trusted() {
		return response.Sync(base, nil)
	}
	base.Auth = "trusted"
	if r.Project != "default" {
		if err := d.projectExists(r.Project); err != nil {
			return response.Error(err)
		}
	}
	cfg := config.Server.Redact(d.config())
	shown := config.Server.Public(cfg)
	if authz.Authorize(id, authz.CanEdit, authz.Entity{Type: authz.Server}) == nil {
		shown = cfg
	}
	env := d.apiEnvironment(r.Project)
	d.trustEnvironment(&env)
	return response.Sync(api.Server{
		Config: shown, ServerUntrusted: base,
		AuthUserName: id.Username, AuthUserMethod: id.Protocol,
		Environment: env,
	}, shown)
}

func (d *Daemon) putServer(r *route.Request) response.Response {
	var req api.ServerPut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateServerConfig(r, func(map[string]string) map[string]string { return config.Normalize(req.Config) })
}

func (d *Daemon) patchServer(r *route.Request) response.Response {
	var req api.ServerPut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateServerConfig(r, func(cur map[string]string) map[string]string { return config.Merge(cur, req.Config) })
}

// updateServerConfig is the one path that changes the server config: ETag,
// schema check, store, cache, event.
func (d *Daemon) updateServerConfig(r *route.Request, next func(map[string]string) map[string]string) response.Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.serverConfig
	// Clients see (and echo back) secrets redacted; the ETag is of that view.
	if err := r.CheckETag(config.Server.Redact(cur)); err != nil {
		return response.Error(err)
	}
	newCfg, _ := config.Server.KeepSecrets(cur, next(maps.Clone(cur)))
	if err := config.Server.Check(newCfg); err != nil {
		return response.Error(err)
	}
	// Side effects (hashing the trust password, moving the HTTPS
	// listener) are prepared here and applied only if the store succeeds.
	commit, abort, err := d.prepareServerConfig(cur, newCfg)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.ReplaceServerConfig(newCfg) })
	if err != nil {
		abort()
		return response.Error(err)
	}
	commit()
	d.serverConfig = newCfg
	d.bus.Lifecycle("config-updated", "/1.0", "", r.Identity.Requestor(), nil)
	return response.EmptySync()
}
