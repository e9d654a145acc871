package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authn"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/endpoint"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/event"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/password"
	"github.com/moat/moat/internal/pki"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
	"github.com/moat/moat/internal/throttle"
)

func init() {
	apiExtensions = append(apiExtensions,
		"certificate_update",
		"certificate_project",
		"certificate_token",
		"explicit_trust_token",
		"trust_ca_certificates",
		"remote_token_expiry",
	)
}

// trust is the remote API: the HTTPS listener, TLS authentication, the
// trust store cache, trust tokens and the brute-force limiter.
type trust struct {
	d           *Daemon
	cert        *pki.ServerCert
	certPEM     string
	fingerprint string
	allowTLS12  atomic.Bool
	https       *endpoint.HTTPS
	authn       *authn.TLS
	ca          *pki.CA
	limiter     *throttle.Limiter

	// listenMu serialises listener moves.
	listenMu sync.Mutex

	stop     chan struct{}
	stopOnce sync.Once

	tokMu  sync.Mutex
	tokens map[string]*tokenState // by operation id; pending and recently used
}

type tlsIdentityKey struct{}

// initTrust loads (or generates) the server key pair and the CA, builds
// the TLS configuration and the trust store cache. Called from New once
// the router exists.
func (d *Daemon) initTrust(ctx context.Context) error {
	certPath := filepath.Join(d.cfg.StateDir, "server.crt")
	c, err := pki.LoadOrGenerate(certPath, filepath.Join(d.cfg.StateDir, "server.key"), true)
	if err != nil {
		return fmt.Errorf("server key pair: %w", err)
	}
	// The certificate is public (every TLS client gets it), but nothing in
	// the state directory is readable by other users.
	if err := os.Chmod(certPath, 0o600); err != nil {
		return err
	}
	t := &trust{d: d, cert: pki.NewServerCert(c), limiter: throttle.New(throttle.Config{}), tokens: map[string]*tokenState{}, stop: make(chan struct{})}
	t.certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
	leaf, err := authn.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	t.fingerprint = pki.Fingerprint(leaf)
	t.ca, err = pki.NewCA(filepath.Join(d.cfg.StateDir, "server.ca"), filepath.Join(d.cfg.StateDir, "ca.crl"),
		pki.WithErrorHandler(func(err error) {
			d.log.Error("PKI reload failed; the previous CA/CRL stay in force", "err", err)
			d.security("pki_reload_failed", "error", err.Error(), nil, "", nil)
		}))
	if err != nil {
		return fmt.Errorf("PKI mode (server.ca, ca.crl): %w", err)
	}
	t.authn = &authn.TLS{CA: t.ca, TrustCA: func() bool {
		return config.IsTrue(config.Server.Get(d.config(), "core.trust_ca_certificates"))
	}}
	t.allowTLS12.Store(config.IsTrue(config.Server.Get(d.serverConfig, "core.tls_allow_tls12")))
	tls13 := pki.ServerTLSConfig(t.cert)
	tls12 := pki.ServerTLSConfig(t.cert, pki.AllowTLS12())
	base := pki.ServerTLSConfig(t.cert, pki.AllowTLS12())
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if t.allowTLS12.Load() {
			return tls12, nil
		}
		return tls13, nil
	}
	t.https = &endpoint.HTTPS{Handler: http.HandlerFunc(t.serveHTTPS), TLS: base, Log: d.log}
	d.trust = t
	if err := t.reloadTrustStore(ctx); err != nil {
		return err
	}
	if err := t.loadTokens(ctx); err != nil {
		return err
	}
	// Failed certificate authentications on endpoints that need trust are
	// counted and reported from the audit record, where the router's
	// verdict is known.
	prev := d.router.Audit
	d.router.Audit = func(rec route.Record) {
		if prev != nil {
			prev(rec)
		}
		if rec.Denial == "untrusted" && rec.Identity != nil && rec.Identity.ClientCertificate && rec.Identity.Address != "@" {
			t.limiter.Fail(rec.Identity.Address)
			d.security("authn_login_fail:tls", "warning",
				fmt.Sprintf("untrusted client certificate from %s refused on %s %s", rec.Identity.Address, rec.Method, rec.Path),
				rec.Identity, "", &http.Request{Method: rec.Method, URL: &url.URL{Path: rec.Path}})
		}
	}
	// Restricted certificates name projects: follow renames and deletions.
	l := d.bus.Subscribe(func(ev *event.Event) bool {
		return ev.Type == api.EventTypeLifecycle &&
			(bytes.Contains(ev.Metadata, []byte(`"project-renamed"`)) || bytes.Contains(ev.Metadata, []byte(`"project-deleted"`)))
	})
	go func() {
		for {
			select {
			case <-l.C:
				if err := t.reloadTrustStore(context.Background()); err != nil {
					d.log.Error("reload trust store", "err", err)
				}
			case <-l.Done():
				return
			}
		}
	}()
	return nil
}

// reloadTrustStore refreshes the authentication cache from the database.
func (t *trust) reloadTrustStore(ctx context.Context) error {
	var list []store.Certificate
	err := t.d.store.View(ctx, func(tx *store.Tx) (err error) {
		list, err = tx.Certificates()
		return err
	})
	if err != nil {
		return fmt.Errorf("load trust store: %w", err)
	}
	entries := make([]authn.TrustEntry, 0, len(list))
	for _, c := range list {
		b, _ := pem.Decode([]byte(c.Certificate))
		if b == nil {
			t.d.log.Error("trust store entry has no PEM certificate", "fingerprint", c.Fingerprint)
			continue
		}
		entries = append(entries, authn.TrustEntry{Fingerprint: c.Fingerprint, Type: c.Type, Restricted: c.Restricted, Projects: c.Projects, DER: b.Bytes})
	}
	t.authn.SetEntries(entries)
	return nil
}

// serveHTTPS authenticates a TLS request, applies the brute-force limiter
// to callers that are not trusted, and hands the request to the router.
func (t *trust) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	id, failure := t.authn.Identify(r)
	if !id.Trusted() {
		if ok, retry := t.limiter.Allow(r.RemoteAddr); !ok {
			resp := response.Error(throttled(retry))
			_ = resp.Render(w)
			t.d.audit.Record(route.Record{Time: time.Now(), Identity: id, Method: r.Method, Path: r.URL.Path,
				Query: r.URL.RawQuery, Status: resp.Code(), Denial: "throttled"})
			return
		}
	}
	if failure != "" {
		t.limiter.Fail(r.RemoteAddr)
		t.d.security("authn_login_fail:tls", "warning", fmt.Sprintf("client certificate from %s refused: %s", r.RemoteAddr, failure), id, "", r)
	}
	t.d.router.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tlsIdentityKey{}, id)))
}

// tlsIdentity returns the identity serveHTTPS attached, or nil for
// requests that did not come through the HTTPS listener.
func tlsIdentity(r *http.Request) *identity.Identity {
	id, _ := r.Context().Value(tlsIdentityKey{}).(*identity.Identity)
	return id
}

// throttledError is a 429 with Retry-After.
type throttledError struct{ retry time.Duration }

func throttled(retry time.Duration) error { return &throttledError{retry: retry} }

func (e *throttledError) Error() string {
	return fmt.Sprintf("Too many failed authentication attempts; retry in %s", e.retry.Round(time.Second))
}
func (e *throttledError) Unwrap() error { return errdefs.ErrTooManyRequest }
func (e *throttledError) Header() http.Header {
	secs := int((e.retry + time.Second - 1) / time.Second)
	return http.Header{"Retry-After": {strconv.Itoa(max(secs, 1))}}
}

// startHTTPS opens the listener of the stored core.https_address.
func (d *Daemon) startHTTPS() error {
	addr := d.config()["core.https_address"]
	if addr == "" {
		return nil
	}
	canon, err := config.CanonicalListenAddress(addr, 8443)
	if err != nil {
		return err
	}
	ln, err := endpoint.Bind(canon)
	if err != nil {
		// The unix socket still works, so the admin can fix the address.
		d.log.Error("cannot open the HTTPS listener; fix core.https_address", "address", canon, "err", err)
		return nil
	}
	d.trust.https.Swap(canon, ln)
	return nil
}

func (d *Daemon) stopHTTPS(ctx context.Context) error {
	if d.trust == nil {
		return nil
	}
	d.trust.stopOnce.Do(func() { close(d.trust.stop) })
	return d.trust.https.Close(ctx)
}

// prepareServerConfig is the side-effect hook of updateServerConfig. It
// runs after the schema check and before the store: it hashes a new trust
// password in place and binds a moved HTTPS listener, so a change that
// cannot take effect is refused with nothing changed. commit applies the
// prepared change once the config is stored; abort undoes it.
func (d *Daemon) prepareServerConfig(cur, next map[string]string) (commit, abort func(), err error) {
	commit, abort = func() {}, func() {}
	if d.trust == nil {
		return commit, abort, nil
	}
	t := d.trust
	if pw := next["core.trust_password"]; pw != "" && pw != cur["core.trust_password"] {
		h, err := password.Hash(pw)
		if err != nil {
			return nil, nil, errdefs.Invalidf("Invalid value for server configuration key \"core.trust_password\": %v", err)
		}
		next["core.trust_password"] = h
	}
	tls12 := config.IsTrue(config.Server.Get(next, "core.tls_allow_tls12"))
	oldAddr, newAddr := cur["core.https_address"], next["core.https_address"]
	canonNew := ""
	if newAddr != "" {
		canonNew, _ = config.CanonicalListenAddress(newAddr, 8443)
	}
	t.listenMu.Lock()
	configured, _ := t.https.Address()
	if canonNew == configured && (newAddr == oldAddr || configured != "") {
		t.listenMu.Unlock()
		return func() { t.allowTLS12.Store(tls12) }, abort, nil
	}
	var ln net.Listener
	if canonNew != "" {
		ln, err = endpoint.Bind(canonNew)
		if err != nil && configured != "" {
			// The new address may overlap the old one (same port, wider
			// host): free it and try again, restoring it on failure.
			_ = t.https.Close(context.Background())
			ln, err = endpoint.Bind(canonNew)
			if err != nil {
				if old, err2 := endpoint.Bind(configured); err2 == nil {
					t.https.Swap(configured, old)
				}
			}
		}
		if err != nil {
			t.listenMu.Unlock()
			return nil, nil, errdefs.Invalidf("Invalid value %q for server configuration key \"core.https_address\": cannot listen: %v", newAddr, err)
		}
	}
	commit = func() {
		defer t.listenMu.Unlock()
		t.allowTLS12.Store(tls12)
		if ln == nil {
			_ = t.https.Close(context.Background())
			d.log.Info("HTTPS listener closed")
			return
		}
		t.https.Swap(canonNew, ln)
	}
	abort = func() {
		defer t.listenMu.Unlock()
		if ln != nil {
			ln.Close()
		}
	}
	return commit, abort, nil
}

// httpsAddresses are the addresses clients can reach the HTTPS listener
// at: the bound address, or every interface address for a wildcard.
func (t *trust) httpsAddresses() []string {
	_, bound := t.https.Address()
	if bound == "" {
		return []string{}
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return []string{bound}
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		return []string{bound}
	}
	var out []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLinkLocalUnicast() || n.IP.IsMulticast() {
			continue
		}
		if ip.To4() != nil && n.IP.To4() == nil {
			continue
		}
		out = append(out, net.JoinHostPort(n.IP.String(), port))
	}
	slices.Sort(out)
	return out
}

// trustEnvironment fills the TLS parts of GET /1.0's environment.
func (d *Daemon) trustEnvironment(env *api.ServerEnvironment) {
	if d.trust == nil {
		return
	}
	env.Addresses = d.trust.httpsAddresses()
	env.Certificate = d.trust.certPEM
	env.CertificateFingerprint = d.trust.fingerprint
}

var errNoListener = errors.New("Cannot issue token when server is not listening on network")
