// Package identity describes who is calling: every request carries exactly
// one Identity, produced by authentication and consumed by authorization,
// operations, events and the audit log.
package identity

import "github.com/moat/moat/api"

// Kind is the class of a caller, which decides the authorization model that
// applies to it.
type Kind int

// The identity classes.
const (
	// Untrusted callers reach only the endpoints flagged AllowUntrusted.
	Untrusted Kind = iota
	// UnixAdmin is root or a member of the admin group on the unix socket.
	UnixAdmin
	// TLSAdmin is an unrestricted client certificate from the trust store.
	TLSAdmin
	// PKIAdmin is a certificate trusted through the CA (core.trust_ca_certificates).
	PKIAdmin
	// TLSRestricted is a restricted client certificate, confined to Projects.
	TLSRestricted
	// UnixUser is a member of the user group on the per-user socket,
	// confined to its own project.
	UnixUser
)

// Identity is an authenticated (or untrusted) caller.
type Identity struct {
	Kind Kind
	// Username is the unix user name, or the certificate fingerprint.
	Username string
	// Protocol is LXD's auth_user_method: unix, tls, pki.
	Protocol string
	// Address is the peer address ("@" on unix sockets).
	Address string
	// Projects confines TLSRestricted and UnixUser identities.
	Projects []string
	// DefaultProject is the project of requests that name none (a per-user
	// socket user's own project); "" means "default".
	DefaultProject string
	// UID and GID of a unix peer.
	UID, GID uint32
	// ClientCertificate reports whether a TLS client presented a certificate.
	ClientCertificate bool
}

// IsAdmin reports whether the identity has full control of the server.
func (i *Identity) IsAdmin() bool {
	switch i.Kind {
	case UnixAdmin, TLSAdmin, PKIAdmin:
		return true
	}
	return false
}

// Trusted reports whether the caller authenticated at all.
func (i *Identity) Trusted() bool { return i.Kind != Untrusted }

// Requestor is the identity as events and operations report it.
func (i *Identity) Requestor() *api.Requestor {
	if !i.Trusted() {
		return nil
	}
	return &api.Requestor{Username: i.Username, Protocol: i.Protocol, Address: i.Address}
}

// Same reports whether two identities are the same principal, which lets a
// caller see secrets of operations it created itself.
func (i *Identity) Same(o *Identity) bool {
	return i != nil && o != nil && i.Trusted() && i.Kind == o.Kind && i.Username == o.Username && i.Protocol == o.Protocol
}
