package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPS is the remote API listener. It can be started, moved to another
// address and closed while the daemon runs (core.https_address). Plain
// HTTP sent to it gets Go's "Client sent an HTTP request to an HTTPS
// server" 400, never API data.
type HTTPS struct {
	// Handler serves requests; TLS is the listener's TLS configuration.
	Handler http.Handler
	TLS     *tls.Config
	Log     *slog.Logger

	mu     sync.Mutex
	addr   string // configured address, canonical host:port
	ln     net.Listener
	server *http.Server
}

// Bind opens a TCP listener at addr without serving it yet, so a caller
// can refuse a config change whose address cannot be bound before
// committing it.
func Bind(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// Swap starts serving ln (which may be nil to stop listening) at the
// configured address addr, and closes the previous listener. In-flight
// requests on the old listener are given a few seconds to finish.
func (h *HTTPS) Swap(addr string, ln net.Listener) {
	var srv *http.Server
	if ln != nil {
		srv = &http.Server{
			Handler:           h.Handler,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       IdleTimeout,
			ErrorLog:          slog.NewLogLogger(h.Log.Handler(), slog.LevelDebug),
		}
		tl := tls.NewListener(ln, h.TLS)
		go func() {
			if err := srv.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.Log.Error("HTTPS server stopped", "address", addr, "err", err)
			}
		}()
		if host, _, err := net.SplitHostPort(addr); err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
			h.Log.Warn("HTTPS listener bound to every address; the hardening guide recommends one trusted address", "address", addr)
		}
		h.Log.Info("HTTPS listener started", "address", ln.Addr().String())
	}
	h.mu.Lock()
	old := h.server
	h.addr, h.ln, h.server = addr, ln, srv
	h.mu.Unlock()
	if old != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := old.Shutdown(ctx); err != nil {
				old.Close()
			}
		}()
	}
}

// Close stops the listener and closes its connections.
func (h *HTTPS) Close(ctx context.Context) error {
	h.mu.Lock()
	srv := h.server
	h.server, h.ln, h.addr = nil, nil, ""
	h.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

// Address returns the configured address and the bound address ("" when
// not listening).
func (h *HTTPS) Address() (configured, bound string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		return "", ""
	}
	return h.addr, h.ln.Addr().String()
}
