package config

import (
	"errors"

	"github.com/moat/moat/internal/expiry"
)

// Server is the schema of the server config (GET/PUT/PATCH /1.0).
var Server = NewSchema("server", map[string]Key{
	// Stored and validated here; the trust issue's listener reads it.
	"core.https_address": {Validate: ListenAddress},
	// The hardening guide's value: tokens live fifteen minutes unless the
	// operator says otherwise.
	"core.remote_token_expiry":  {Default: "15M", Validate: expiry.Validate},
	"cluster.join_token_expiry": {Default: "15M", Validate: expiry.Validate},
	// Legacy opt-in trust password. The daemon stores an argon2id hash in
	// its place (see daemon's config hook) and GET /1.0 shows only "true"
	// when it is set; sending "true" back keeps the stored hash.
	"core.trust_password": {Secret: true, Validate: TrustPassword},
	// PKI mode: trust any certificate signed by server.ca (and not revoked
	// by ca.crl) without a trust store entry.
	"core.trust_ca_certificates": {Default: "false", Validate: Bool},
	// TLS 1.3 only unless this is true; then TLS 1.2 with ECDHE and AEAD
	// suites only. For old clients; a hardening audit flags it.
	"core.tls_allow_tls12": {Default: "false", Validate: Bool},
})

// SecretPlaceholder is what the API shows for a set secret key.
const SecretPlaceholder = "true"

// TrustPassword accepts a trust password of at least 8 characters (or a
// stored hash, which is longer). "true" is refused: it is how the API
// shows that a password is set, and sending it back keeps the password.
func TrustPassword(v string) error {
	if len(v) < 8 {
		return errors.New("must be at least 8 characters long")
	}
	return nil
}

var (
	blockAllow = OneOf("block", "allow")
	feature    = Key{Validate: Bool}
)

// Project is the schema of a project's config. The restriction and limit
// keys are declared (and their values validated) here; their enforcement is
// the project package's job.
var Project = NewSchema("project", map[string]Key{
	"features.images":                    feature,
	"features.profiles":                  feature,
	"features.storage.volumes":           feature,
	"features.storage.buckets":           feature,
	"features.networks":                  feature,
	"features.networks.zones":            feature,
	"restricted":                         {Default: "false", Validate: Bool},
	"restricted.containers.nesting":      {Default: "block", Validate: blockAllow},
	"restricted.containers.lowlevel":     {Default: "block", Validate: blockAllow},
	"restricted.containers.privilege":    {Default: "unprivileged", Validate: OneOf("unprivileged", "isolated", "allow")},
	"restricted.containers.interception": {Default: "block", Validate: OneOf("block", "allow", "full")},
	"restricted.devices.disk":            {Default: "managed", Validate: OneOf("block", "managed", "allow")},
	"restricted.devices.disk.paths":      {Validate: CommaList(AbsPath)},
	"restricted.devices.nic":             {Default: "managed", Validate: OneOf("block", "managed", "allow")},
	"restricted.devices.gpu":             {Default: "block", Validate: blockAllow},
	"restricted.devices.usb":             {Default: "block", Validate: blockAllow},
	"restricted.devices.pci":             {Default: "block", Validate: blockAllow},
	"restricted.devices.proxy":           {Default: "block", Validate: blockAllow},
	"restricted.devices.unix-char":       {Default: "block", Validate: blockAllow},
	"restricted.devices.unix-block":      {Default: "block", Validate: blockAllow},
	"restricted.devices.unix-hotplug":    {Default: "block", Validate: blockAllow},
	"restricted.devices.infiniband":      {Default: "block", Validate: blockAllow},
	"restricted.networks.access":         {Validate: CommaList(Name)},
	"restricted.snapshots":               {Default: "block", Validate: blockAllow},
	"restricted.backups":                 {Default: "block", Validate: blockAllow},
	"restricted.idmap.uid":               {Validate: CommaList(IDRange)},
	"restricted.idmap.gid":               {Validate: CommaList(IDRange)},
	"limits.instances":                   {Validate: Uint(1 << 31)},
	"limits.containers":                  {Validate: Uint(1 << 31)},
	"limits.cpu":                         {Validate: Uint(1 << 16)},
	"limits.memory":                      {Validate: ByteSize},
	"limits.processes":                   {Validate: Uint(1 << 31)},
})

// ProjectFeatureDefaults are the features a new project gets when its
// creator does not say otherwise (as LXD's API and CLI do).
var ProjectFeatureDefaults = map[string]string{
	"features.images":          "true",
	"features.profiles":        "true",
	"features.storage.volumes": "true",
	"features.storage.buckets": "true",
}
