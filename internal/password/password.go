// Package password hashes and verifies the opt-in legacy trust password
// (core.trust_password). Hashes are argon2id in the PHC string format,
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with unpadded standard base64, so the parameters travel with the hash
// and can be raised later without breaking stored values.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters for new hashes: the OWASP minimum for argon2id (19 MiB, two
// passes, one lane). The endpoint that checks the password is reachable
// without authentication, so memory per attempt is the DoS budget; see
// verifySlots.
const (
	memoryKiB = 19 * 1024
	passes    = 2
	threads   = 1
	saltLen   = 16
	keyLen    = 32
)

// Upper bounds for parameters read back from a stored hash, so a corrupted
// or hostile config value cannot make a single Verify allocate gigabytes.
const (
	maxMemoryKiB = 256 * 1024
	maxTime      = 16
	maxThreads   = 16
)

// verifySlots bounds concurrent hashing so that a flood of password
// attempts from many addresses costs at most a few tens of MiB at once
// instead of 19 MiB per request.
var verifySlots = make(chan struct{}, 4)

var (
	// ErrEmpty is returned for an empty password.
	ErrEmpty = errors.New("password must not be empty")
	// ErrMalformed is returned (wrapped) when a stored hash cannot be parsed.
	ErrMalformed = errors.New("malformed password hash")
)

var b64 = base64.RawStdEncoding

// Hash returns the encoded argon2id hash of pw with a fresh random salt.
func Hash(pw string) (string, error) {
	if pw == "" {
		return "", ErrEmpty
	}
	salt := make([]byte, saltLen)
	// crypto/rand.Read never returns an error.
	_, _ = rand.Read(salt)
	key := derive(pw, salt, passes, memoryKiB, threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, memoryKiB, passes, threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether pw matches the encoded hash. The comparison of
// the derived keys is constant-time. An error means the stored hash is
// unusable (or pw is empty), not that the password is wrong.
func Verify(encoded, pw string) (bool, error) {
	if pw == "" {
		return false, ErrEmpty
	}
	p, err := parse(encoded)
	if err != nil {
		return false, err
	}
	key := derive(pw, p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

func derive(pw string, salt []byte, t, m uint32, p uint8, n uint32) []byte {
	verifySlots <- struct{}{}
	defer func() { <-verifySlots }()
	return argon2.IDKey([]byte(pw), salt, t, m, p, n)
}

type params struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

func parse(encoded string) (params, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	f := strings.Split(encoded, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return params{}, fmt.Errorf("%w: not an argon2id PHC string", ErrMalformed)
	}
	if f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return params{}, fmt.Errorf("%w: unsupported version %q", ErrMalformed, f[2])
	}
	var p params
	var m, t, th uint64
	// Sscanf ignores trailing text and accepts signs; requiring the
	// canonical rendering rejects both.
	_, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &th)
	if err != nil || f[3] != fmt.Sprintf("m=%d,t=%d,p=%d", m, t, th) {
		return params{}, fmt.Errorf("%w: bad parameters %q", ErrMalformed, f[3])
	}
	if m < 8*th || m > maxMemoryKiB || t < 1 || t > maxTime || th < 1 || th > maxThreads {
		return params{}, fmt.Errorf("%w: parameters out of range %q", ErrMalformed, f[3])
	}
	p.memory, p.time, p.threads = uint32(m), uint32(t), uint8(th)
	if p.salt, err = b64.DecodeString(f[4]); err != nil || len(p.salt) < 8 {
		return params{}, fmt.Errorf("%w: bad salt", ErrMalformed)
	}
	if p.key, err = b64.DecodeString(f[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return params{}, fmt.Errorf("%w: bad hash", ErrMalformed)
	}
	return p, nil
}
