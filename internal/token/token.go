// Package token encodes and decodes certificate-add trust tokens in the
// format LXD clients understand: standard padded base64 of a compact JSON
// object. The client builds the token from operation metadata and the
// server receives it back verbatim, so the field names and their order are
// part of the wire contract.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token types carried in the "type" field.
const (
	// TypeCertificate marks a token for the legacy /1.0/certificates API.
	TypeCertificate = ""
	// TypeIdentity marks a token issued by the identities API.
	TypeIdentity = "Client certificate"
)

// maxEncodedLen bounds the work done on untrusted input before base64 and
// JSON decoding. Real tokens are a few hundred bytes; the generous limit
// leaves room for servers with many listen addresses.
const maxEncodedLen = 16 << 10

// ErrInvalid is returned (wrapped) for any token that cannot be decoded or
// lacks a required field.
var ErrInvalid = errors.New("invalid trust token")

// Token is a certificate-add token. The field order matches the JSON the
// LXD client produces; do not reorder.
type Token struct {
	ClientName  string   `json:"client_name"`
	Fingerprint string   `json:"fingerprint"` // sha256 of the server certificate, lower-case hex
	Addresses   []string `json:"addresses"`   // host:port, IPv6 bracketed
	Secret      string   `json:"secret"`
	// ExpiresAt is the zero time when the token never expires; it is then
	// rendered as 0001-01-01T00:00:00Z, as LXD clients expect.
	ExpiresAt time.Time `json:"expires_at"`
	Type      string    `json:"type"`
}

// NewSecret returns a fresh token secret: 32 random bytes, hex encoded.
func NewSecret() string {
	var b [32]byte
	// crypto/rand.Read never returns an error; it crashes the program if
	// the kernel cannot supply randomness.
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Encode returns the token string for t. It refuses tokens that Decode
// would reject, so the server never hands out a token it cannot redeem.
func Encode(t Token) (string, error) {
	if err := t.validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encoding trust token: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// Decode parses a token string. Leading and trailing whitespace, as left
// by copy and paste, is ignored. Tokens produced by older clients without
// a "type" field decode as TypeCertificate.
func Decode(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxEncodedLen {
		return Token{}, fmt.Errorf("%w: too long", ErrInvalid)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var t Token
	if err := json.Unmarshal(raw, &t); err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := t.validate(); err != nil {
		return Token{}, err
	}
	return t, nil
}

func (t Token) validate() error {
	switch {
	case t.ClientName == "":
		return fmt.Errorf("%w: missing client name", ErrInvalid)
	case len(t.Addresses) == 0:
		return fmt.Errorf("%w: no server addresses", ErrInvalid)
	case t.Secret == "":
		return fmt.Errorf("%w: missing secret", ErrInvalid)
	case t.Fingerprint == "":
		return fmt.Errorf("%w: missing server fingerprint", ErrInvalid)
	}
	return nil
}

// Expired reports whether the token has expired at now. A token without
// an expiry never expires.
func (t Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// SecretsEqual compares two secrets in constant time. Both sides are hashed
// first so the comparison does not leak the length of the stored secret
// either. An empty secret never matches, so a record with a missing secret
// cannot be redeemed with an empty one.
func SecretsEqual(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ha := sha256.Sum256([]byte(a))
	hb := sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
