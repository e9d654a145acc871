package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/expiry"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/store"
	"github.com/moat/moat/internal/token"
)

// tokenState is a trust token in memory; the database row is the source
// of truth and is written first.
type tokenState struct {
	rec store.Token
	op  *operation.Operation // nil once used
}

// usedTokenMemory is how long a used token is remembered so a replay is
// recognised as such (authn_token_reuse) rather than as a wrong guess.
const usedTokenMemory = 24 * time.Hour

var errNoMatchingToken = errdefs.Forbiddenf("No matching certificate add operation found")

// tokenOperationArgs builds the operation that represents a pending token.
// Its secret is a SecretKey (only the creator and full admins see it) and
// the operation itself is admin-only (operationEntity).
func (t *trust) tokenOperationArgs(rec store.Token, creator *identity.Identity) operation.Args {
	projects := rec.Projects
	if projects == nil {
		projects = []string{}
	}
	md := map[string]any{
		"secret":      rec.Secret,
		"fingerprint": t.fingerprint,
		"addresses":   t.httpsAddresses(),
		"request": map[string]any{
			"name": rec.Name, "type": "client", "restricted": rec.Restricted, "projects": projects,
			"certificate": "", "password": "", "token": true,
		},
	}
	if !rec.ExpiresAt.IsZero() {
		md["expiresAt"] = rec.ExpiresAt.Format(time.RFC3339Nano)
	}
	return operation.Args{
		ID: rec.ID, Class: api.OperationClassToken, Description: "Certificate add token",
		Metadata: md, SecretKeys: []string{"secret"}, MayCancel: true, Creator: creator,
		OnCancel: func(op *operation.Operation) error { return t.revokeToken(op.ID()) },
	}
}

// createToken issues a token for req (validated by the caller).
func (t *trust) createToken(r *http.Request, id *identity.Identity, req api.CertificatesPost) (*operation.Operation, error) {
	if len(t.httpsAddresses()) == 0 {
		return nil, errdefs.Invalidf("%s", errNoListener)
	}
	exp, err := expiry.Parse(config.Server.Get(t.d.config(), "core.remote_token_expiry"))
	if err != nil {
		return nil, fmt.Errorf("core.remote_token_expiry: %w", err)
	}
	now := time.Now().UTC()
	creator, _ := json.Marshal(id.Requestor())
	rec := store.Token{
		Secret: token.NewSecret(), Name: req.Name, Restricted: req.Restricted, Projects: req.Projects,
		Creator: creator, CreatedAt: now, ExpiresAt: exp.From(now),
	}
	op, err := t.d.ops.Create(t.tokenOperationArgs(rec, id))
	if err != nil {
		return nil, err
	}
	rec.ID = op.ID()
	t.tokMu.Lock()
	err = t.d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.CreateToken(rec) })
	if err == nil {
		t.tokens[rec.ID] = &tokenState{rec: rec, op: op}
	}
	t.tokMu.Unlock()
	if err != nil {
		op.Finish(err)
		return nil, err
	}
	op.Start()
	t.d.security("authn_token_created:"+op.ID(), "info",
		fmt.Sprintf("trust token for %q created (restricted=%v, projects=%v, expires %s)", req.Name, req.Restricted, req.Projects, expiresText(rec.ExpiresAt)), id, "", r)
	return op, nil
}

func expiresText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339)
}

// loadTokens re-exposes pending tokens after a start as running token
// operations, consumes the ones that expired meanwhile, and starts the
// pruner.
func (t *trust) loadTokens(ctx context.Context) error {
	var list []store.Token
	err := t.d.store.View(ctx, func(tx *store.Tx) (err error) {
		list, err = tx.Tokens()
		return err
	})
	if err != nil {
		return fmt.Errorf("load trust tokens: %w", err)
	}
	t.tokMu.Lock()
	for _, rec := range list {
		st := &tokenState{rec: rec}
		if rec.UsedAt.IsZero() {
			var creator *identity.Identity
			var rq api.Requestor
			if json.Unmarshal(rec.Creator, &rq) == nil && rq.Username != "" {
				creator = &identity.Identity{Kind: identity.UnixAdmin, Username: rq.Username, Protocol: rq.Protocol, Address: rq.Address}
			}
			op, err := t.d.ops.Create(t.tokenOperationArgs(rec, creator))
			if err != nil {
				t.tokMu.Unlock()
				return err
			}
			op.Start()
			st.op = op
		}
		t.tokens[rec.ID] = st
	}
	t.tokMu.Unlock()
	t.pruneTokens()
	go func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				t.pruneTokens()
			case <-t.stop:
				return
			}
		}
	}()
	return nil
}

// pruneTokens consumes expired pending tokens and forgets used ones after
// usedTokenMemory.
func (t *trust) pruneTokens() {
	now := time.Now().UTC()
	t.tokMu.Lock()
	defer t.tokMu.Unlock()
	for id, st := range t.tokens {
		switch {
		case st.rec.UsedAt.IsZero() && !st.rec.ExpiresAt.IsZero() && !now.Before(st.rec.ExpiresAt):
			ok, err := t.consumeLocked(st, now)
			if err != nil || !ok {
				continue
			}
			st.op.Finish(errors.New("Token has expired"))
			st.op = nil
			t.d.security("authn_token_expired:"+id, "info", fmt.Sprintf("trust token for %q expired unused", st.rec.Name), nil, "", nil)
		case !st.rec.UsedAt.IsZero() && now.Sub(st.rec.UsedAt) > usedTokenMemory:
			delete(t.tokens, id)
		}
	}
	_ = t.d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.PruneTokens(now.Add(-usedTokenMemory)) })
}

// consumeLocked marks a pending token used, in the database first.
func (t *trust) consumeLocked(st *tokenState, now time.Time) (bool, error) {
	var ok bool
	err := t.d.store.Update(context.Background(), func(tx *store.Tx) (err error) {
		ok, err = tx.ConsumeToken(st.rec.ID, now)
		return err
	})
	if err != nil || !ok {
		return ok, err
	}
	st.rec.UsedAt = now
	return true, nil
}

// revokeToken deletes a pending token (DELETE /1.0/operations/{id}).
func (t *trust) revokeToken(id string) error {
	t.tokMu.Lock()
	defer t.tokMu.Unlock()
	st, ok := t.tokens[id]
	if !ok || !st.rec.UsedAt.IsZero() {
		return errdefs.Invalidf("Token is already used or expired")
	}
	if err := t.d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.DeleteToken(id) }); err != nil {
		return err
	}
	delete(t.tokens, id)
	t.d.security("authn_token_revoked:"+id, "info", fmt.Sprintf("trust token for %q revoked", st.rec.Name), nil, "", nil)
	return nil
}

// redeemToken finds the pending token whose secret matches and consumes
// it (single use; an expired token is consumed too). Every stored secret
// is compared, in constant time, whatever matches first.
func (t *trust) redeemToken(r *http.Request, id *identity.Identity, secret string) (store.Token, error) {
	rec, _, err := t.redeemTokenAdding(r, id, secret, nil)
	return rec, err
}

// redeemTokenAdding is redeemToken that, for a valid token, also stores
// the certificate entry(rec) returns, in the same transaction as the
// consumption: one commit, one fsync. If building or storing the entry
// fails, the token is consumed all the same (in a transaction of its own)
// and that failure is returned as addErr, with err nil: the token was
// good, so it is not an authentication failure, but it cannot be tried
// again.
func (t *trust) redeemTokenAdding(r *http.Request, id *identity.Identity, secret string, entry func(store.Token) (store.Certificate, error)) (rec store.Token, addErr, err error) {
	now := time.Now().UTC()
	t.tokMu.Lock()
	var found *tokenState
	for _, st := range t.tokens {
		if token.SecretsEqual(st.rec.Secret, secret) && found == nil {
			found = st
		}
	}
	if found == nil {
		t.tokMu.Unlock()
		return store.Token{}, nil, errNoMatchingToken
	}
	if !found.rec.UsedAt.IsZero() {
		t.tokMu.Unlock()
		t.d.security("authn_token_reuse", "warning", fmt.Sprintf("used trust token for %q presented again by %s", found.rec.Name, id.Address), id, "", r)
		return store.Token{}, nil, errNoMatchingToken
	}
	expired := !found.rec.ExpiresAt.IsZero() && !now.Before(found.rec.ExpiresAt)
	var ok bool
	var cert store.Certificate
	if entry != nil && !expired {
		cert, addErr = entry(found.rec)
	}
	if entry != nil && !expired && addErr == nil {
		err = t.d.store.Update(context.Background(), func(tx *store.Tx) error {
			if ok, err = tx.ConsumeToken(found.rec.ID, now); err != nil || !ok {
				return err
			}
			if addErr = tx.CreateCertificate(cert); addErr != nil {
				ok = false
				return addErr
			}
			return nil
		})
		if addErr == nil && err == nil && ok {
			found.rec.UsedAt = now
		}
	}
	if addErr != nil || entry == nil || expired {
		// Consume alone: no entry wanted, an expired token, or an entry
		// that could not be stored (rolled back with the consumption).
		ok, err = t.consumeLocked(found, now)
	}
	op := found.op
	found.op = nil
	rec = found.rec
	t.tokMu.Unlock()
	if err != nil {
		return store.Token{}, nil, err
	}
	if !ok {
		return store.Token{}, nil, errNoMatchingToken
	}
	if expired {
		if op != nil {
			op.Finish(errors.New("Token has expired"))
		}
		return store.Token{}, nil, errdefs.Forbiddenf("Token has expired")
	}
	if op != nil {
		op.Finish(nil)
	}
	return rec, addErr, nil
}
