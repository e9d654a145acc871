// Package daemon wires Moat together: it opens the store, builds the event
// bus, the operation manager and the route table, and serves the listeners.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/moat/moat/internal/audit"
	"github.com/moat/moat/internal/authn"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/endpoint"
	"github.com/moat/moat/internal/event"
	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

// Version is the daemon's version string.
const Version = "0.1.0"

// Config is how moatd was started.
type Config struct {
	// StateDir holds the database, the socket and the keys.
	StateDir string
	// Group is the admin group: its members get full control over the
	// unix socket.
	Group string
	// UserGroup, when set, serves DIR/user/unix.socket to its members, each
	// confined to a project of their own.
	UserGroup string
	// Log is the daemon's logger; the daemon also turns its records into
	// logging events.
	LogHandler slog.Handler
}

// Daemon is a running moatd.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	bus    *event.Bus
	ops    *operation.Manager
	router *route.Router
	audit  *audit.Log
	env    environment
	unix   authn.Unix
	trust  *trust      // remote API: HTTPS listener, TLS trust, tokens
	ct     *containers // images, storage, instances (containers.go)

	lock       *os.File
	server     *http.Server
	userServer *http.Server
	listener   net.Listener
	// provisioned remembers the per-user projects known to exist.
	provisioned sync.Map

	mu           sync.RWMutex
	serverConfig map[string]string
}

// New prepares a daemon: state dir, lock, store, services. It does not
// listen yet.
func New(ctx context.Context, cfg Config) (d *Daemon, err error) {
	grp, err := user.LookupGroup(cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("admin group %q does not exist (create it with: groupadd %s): %w", cfg.Group, cfg.Group, err)
	}
	gid, _ := strconv.Atoi(grp.Gid)
	userGID := 0
	if cfg.UserGroup != "" {
		ug, err := user.LookupGroup(cfg.UserGroup)
		if err != nil {
			return nil, fmt.Errorf("user group %q does not exist (create it with: groupadd %s): %w", cfg.UserGroup, cfg.UserGroup, err)
		}
		if ug.Gid == grp.Gid {
			return nil, fmt.Errorf("the user group must differ from the admin group %q", cfg.Group)
		}
		userGID, _ = strconv.Atoi(ug.Gid)
	}

	// Everything the daemon creates (database, WAL, keys, logs) is private
	// unless it says otherwise (the socket does).
	syscall.Umask(0o077)
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	// Others may traverse (to reach the socket) but never list or read.
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chown(cfg.StateDir, 0, 0); err != nil {
		return nil, err
	}
	lock, err := endpoint.Lock(filepath.Join(cfg.StateDir, ".lock"))
	if errors.Is(err, endpoint.ErrLocked) {
		return nil, fmt.Errorf("another moatd is already running with state directory %s", cfg.StateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("lock state directory: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()

	bus := event.NewBus("none")
	d = &Daemon{
		cfg:  cfg,
		bus:  bus,
		ops:  operation.NewManager(bus),
		lock: lock,
		unix: authn.Unix{AdminGID: uint32(gid), UserGID: uint32(userGID)},
		env:  probeEnvironment(),
	}
	d.log = slog.New(event.NewLogHandler(cfg.LogHandler, bus))

	d.store, err = store.Open(ctx, filepath.Join(cfg.StateDir, "moat.db"))
	if err != nil {
		return nil, err
	}
	d.audit, err = audit.Open(filepath.Join(cfg.StateDir, "audit.log"))
	if err != nil {
		d.store.Close()
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	err = d.store.View(ctx, func(tx *store.Tx) error {
		d.serverConfig, err = tx.ServerConfig()
		return err
	})
	if err != nil {
		d.audit.Close()
		d.store.Close()
		return nil, fmt.Errorf("load server config: %w", err)
	}
	if err := d.initContainers(ctx); err != nil {
		d.audit.Close()
		d.store.Close()
		return nil, err
	}

	d.router = route.NewRouter(d.endpoints())
	d.router.Log = d.log
	d.router.Audit = d.audit.Record
	d.router.Authenticate = d.authenticate
	d.router.Denied = d.denied
	if err := d.initTrust(ctx); err != nil {
		d.audit.Close()
		d.store.Close()
		return nil, err
	}
	return d, nil
}

// SocketPath is the admin socket.
func (d *Daemon) SocketPath() string { return filepath.Join(d.cfg.StateDir, "unix.socket") }

// Router exposes the route table (for tests that walk it).
func (d *Daemon) Router() *route.Router { return d.router }

// Start opens the listeners and serves them in the background.
func (d *Daemon) Start() error {
	// The admin socket opens last: it accepts connections as soon as it
	// exists, and a client that reached it may rely on every other
	// listener being up.
	if err := d.startUserSocket(); err != nil {
		return fmt.Errorf("user socket: %w", err)
	}
	if err := d.startHTTPS(); err != nil {
		d.closeUserSocket()
		return err
	}
	l, err := endpoint.ListenUnix(d.SocketPath(), int(d.unix.AdminGID))
	if err != nil {
		d.closeUserSocket()
		_ = d.stopHTTPS(context.Background())
		return err
	}
	d.listener = l
	d.server = &http.Server{
		Handler:           d.router,
		ConnContext:       endpoint.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       endpoint.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := d.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("unix socket server stopped", "err", err)
		}
	}()
	d.log.Info("moatd ready", "socket", d.SocketPath(), "version", Version)
	return nil
}

// Shutdown stops accepting requests, cancels or finishes operations, and
// closes the store.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.router.ShutDown()
	d.ops.Shutdown(10 * time.Second)
	d.stopWatching() // containers keep running
	d.bus.Close()
	var errs []error
	if err := d.stopHTTPS(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, srv := range []*http.Server{d.server, d.userServer} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			srv.Close()
		}
	}
	errs = append(errs, d.audit.Close(), d.store.Close(), d.lock.Close())
	d.log.Info("moatd stopped")
	return errors.Join(errs...)
}

func (d *Daemon) authenticate(r *http.Request) *identity.Identity {
	if id := tlsIdentity(r); id != nil {
		return id
	}
	if p, ok := endpoint.PeerFromContext(r.Context()); ok {
		id := d.unix.Identify(p)
		if id.Kind == identity.UnixUser {
			if err := d.provisionUser(id); err != nil {
				d.log.Error("per-user project", "user", id.Username, "err", err)
				return &identity.Identity{Kind: identity.Untrusted, Address: "@"}
			}
		}
		return id
	}
	return &identity.Identity{Kind: identity.Untrusted, Address: r.RemoteAddr}
}

// denied turns an authorization failure into a security event.
func (d *Daemon) denied(id *identity.Identity, r *http.Request, ent authz.Entitlement, e authz.Entity) {
	d.security(fmt.Sprintf("authz_fail:%s:%s", ent, r.URL.Path), "warning",
		fmt.Sprintf("%s denied %s on %s", id.Username, ent, r.URL.Path), id, e.Project, r)
}

// config returns a snapshot of the server config.
func (d *Daemon) config() map[string]string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.serverConfig
}
