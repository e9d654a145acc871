// Package authn turns what a listener knows about a caller (unix peer
// credentials now; TLS certificates, tokens and OIDC later) into an
// identity.Identity.
package authn

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"

	"github.com/moat/moat/internal/endpoint"
	"github.com/moat/moat/internal/identity"
)

// Unix authenticates peers of the admin socket and of the per-user socket.
type Unix struct {
	// AdminGID is the admin group; its members and root are full admins.
	AdminGID uint32
	// UserGID is the group allowed on the per-user socket.
	UserGID uint32

	names sync.Map // uid -> user name
}

// Identify returns the identity of a unix peer. The socket's mode already
// keeps out everyone but root and the admin group; the group is checked here
// again so a loosened socket mode never turns into access.
func (u *Unix) Identify(p endpoint.Peer) *identity.Identity {
	if p.UserSocket {
		return u.identifyUser(p)
	}
	id := &identity.Identity{Protocol: "unix", Address: "@", UID: p.UID, GID: p.GID, Username: u.username(p.UID)}
	if p.UID == 0 || p.GID == u.AdminGID || inGroup(p.PID, u.AdminGID) {
		id.Kind = identity.UnixAdmin
		return id
	}
	return &identity.Identity{Kind: identity.Untrusted, Address: "@", UID: p.UID, GID: p.GID}
}

// UserProject is the project a per-user socket user is confined to.
func UserProject(uid uint32) string { return fmt.Sprintf("user-%d", uid) }

// identifyUser confines a per-user socket peer to its own project. Being in
// the admin group does not widen that: the socket a caller picks decides
// its role, so a mistake on this socket can never act as admin.
func (u *Unix) identifyUser(p endpoint.Peer) *identity.Identity {
	if p.UID != 0 && p.GID != u.UserGID && !inGroup(p.PID, u.UserGID) {
		return &identity.Identity{Kind: identity.Untrusted, Address: "@", UID: p.UID, GID: p.GID}
	}
	project := UserProject(p.UID)
	return &identity.Identity{Kind: identity.UnixUser, Protocol: "unix", Address: "@", UID: p.UID, GID: p.GID,
		Username: u.username(p.UID), Projects: []string{project}, DefaultProject: project}
}

func (u *Unix) username(uid uint32) string {
	if n, ok := u.names.Load(uid); ok {
		return n.(string)
	}
	name := fmt.Sprintf("uid=%d", uid)
	if usr, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = usr.Username
	}
	u.names.Store(uid, name)
	return name
}

// inGroup reports whether process pid has gid among its supplementary
// groups; SO_PEERCRED carries only the primary one.
func inGroup(pid int32, gid uint32) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := strconv.FormatUint(uint64(gid), 10)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		for _, g := range strings.Fields(line) {
			if g == want {
				return true
			}
		}
		return false
	}
	return false
}
