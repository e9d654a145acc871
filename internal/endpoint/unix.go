// Package endpoint owns the daemon's listeners: the admin unix socket now,
// the HTTPS listener later. It knows how to read who is on the other end of
// a connection and leaves the decision of what that means to authn.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type peerKey struct{}

// Peer is the kernel's account of a unix socket peer (SO_PEERCRED).
type Peer struct {
	PID      int32
	UID, GID uint32
	// UserSocket is set for peers of the per-user socket, who are confined
	// to their own project whatever groups they are in.
	UserSocket bool
}

// PeerFromContext returns the unix peer of the request's connection.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// ConnContext is an http.Server ConnContext hook that attaches the peer
// credentials of unix connections.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return withPeer(ctx, c, false)
}

// UserConnContext is ConnContext for the per-user socket.
func UserConnContext(ctx context.Context, c net.Conn) context.Context {
	return withPeer(ctx, c, true)
}

func withPeer(ctx context.Context, c net.Conn, userSocket bool) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || credErr != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid, UserSocket: userSocket})
}

// ListenUnix creates the socket at path with mode 0660, owned by root and
// the given group. A socket left by a crashed daemon is replaced; callers
// must hold the state directory lock so that a live daemon's socket is never
// taken over.
func ListenUnix(path string, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// Create the socket with no access at all and open it up only once
	// ownership is right, so there is no window with the wrong group.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chown(path, 0, gid); err != nil {
		l.Close()
		return nil, fmt.Errorf("chown %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

// ErrLocked means another daemon holds the state directory.
var ErrLocked = errors.New("state directory is locked")

// IdleTimeout closes a keep-alive connection left idle this long, on every
// listener: a client (a per-user socket user included) cannot pin the
// daemon's descriptors with connections it opened and forgot.
// Websockets (events, exec) are hijacked and not affected.
const IdleTimeout = 2 * time.Minute

// Lock takes an exclusive lock on path (created if needed) for the life of
// the process. It fails with ErrLocked if another process holds it.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, err
	}
	return f, nil
}
