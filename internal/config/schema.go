// Package config is Moat's typed configuration schema and its single
// validation choke point. Every path that changes configuration (server,
// projects, and later instances, profiles, networks) calls Schema.Check;
// nothing else decides whether a key or value is acceptable.
//
// The schema is an allow-list: a key that is not declared is refused, except
// under the free-form "user." namespace.
package config

import (
	"sort"
	"strings"

	"github.com/moat/moat/internal/errdefs"
)

// Key declares one configuration key.
type Key struct {
	// Default is the value in force when the key is unset ("" for none).
	Default string
	// Validate checks a non-empty value; nil accepts any string.
	Validate func(value string) error
	// Public keys may be shown to callers that cannot edit the config.
	Public bool
	// Secret keys are never returned by the API (see Redact).
	Secret bool
}

// Schema is the set of keys valid in one kind of config map.
type Schema struct {
	name     string
	keys     map[string]Key
	freeform []string // prefixes whose keys are free-form
}

// NewSchema builds a schema named for error messages (e.g. "server").
func NewSchema(name string, keys map[string]Key) *Schema {
	return &Schema{name: name, keys: keys, freeform: []string{"user."}}
}

// Lookup returns the declaration of key.
func (s *Schema) Lookup(key string) (Key, bool) {
	k, ok := s.keys[key]
	if ok {
		return k, true
	}
	for _, p := range s.freeform {
		if strings.HasPrefix(key, p) && len(key) > len(p) {
			return Key{}, true
		}
	}
	return Key{}, false
}

// Check validates a complete config map. It reports the first problem in
// key order so the message is stable, naming the key and the reason; the
// returned error wraps errdefs.ErrInvalid. An empty value means "unset" and
// is always accepted for a declared key.
func (s *Schema) Check(cfg map[string]string) error {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		decl, ok := s.Lookup(k)
		if !ok {
			return errdefs.Invalidf("Unknown %s configuration key %q", s.name, k)
		}
		v := cfg[k]
		if v == "" || decl.Validate == nil {
			continue
		}
		if err := decl.Validate(v); err != nil {
			return errdefs.Invalidf("Invalid value %q for %s configuration key %q: %v", v, s.name, k, err)
		}
	}
	return nil
}

// Get returns the value of key in cfg, or its default.
func (s *Schema) Get(cfg map[string]string, key string) string {
	if v, ok := cfg[key]; ok && v != "" {
		return v
	}
	return s.keys[key].Default
}

// Normalize drops unset (empty) values so that stored maps hold only keys
// that are set, as LXD does.
func Normalize(cfg map[string]string) map[string]string {
	out := make(map[string]string, len(cfg))
	for k, v := range cfg {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// Merge returns base with patch applied (PATCH semantics: an empty value in
// patch unsets the key).
func Merge(base, patch map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(patch))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		out[k] = v
	}
	return Normalize(out)
}

// Public returns the subset of cfg that callers without edit rights may see.
func (s *Schema) Public(cfg map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range cfg {
		if decl, ok := s.keys[k]; ok && decl.Public && !decl.Secret {
			out[k] = v
		}
	}
	return out
}
