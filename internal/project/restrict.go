// Package project enforces project restrictions and limits on instances.
//
// LXD applies restrictions only when a project has restricted=true, which
// makes "a restricted certificate in an unrestricted project" a root
// escalation. Moat adds the delegation floor: a caller that is not a full
// admin is held to the restricted defaults in every project, unless the
// project explicitly allows more with restricted.*=allow.
package project

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/idmap"
)

// Policy is the restriction policy that applies to one change.
type Policy struct {
	Project string
	Config  map[string]string
	// Admin is true for full admins: for them an unrestricted project
	// restricts nothing.
	Admin bool
}

// Active reports whether restrictions apply: the project is restricted, or
// the caller is not a full admin (the delegation floor).
func (p Policy) Active() bool {
	return config.IsTrue(p.Config["restricted"]) || !p.Admin
}

// value is the restriction in force for key: the project's value, or the
// restricted default.
func (p Policy) value(key string) string {
	return config.Project.Get(p.Config, key)
}

// lowLevelKeys may give host-level power; they need
// restricted.containers.lowlevel=allow.
var lowLevelPrefixes = []string{"raw.", "security.idmap.base", "security.idmap.size", "linux.kernel_modules",
	"security.syscalls.intercept.", "boot.host_shutdown_timeout", "security.devlxd.images",
	"security.delegate_bpf", config.ForcePrivilegedNesting}

// CheckInstance checks an instance's expanded config and devices against
// the policy. The error wraps errdefs.ErrInvalid and names the key, the
// instance, the project and the rule.
func (p Policy) CheckInstance(name string, cfg map[string]string, devices map[string]map[string]string) error {
	return p.check("container", name, cfg, devices)
}

// CheckProfile applies the same rules to a profile's own config and
// devices, so a profile cannot hold what no instance could use.
func (p Policy) CheckProfile(name string, cfg map[string]string, devices map[string]map[string]string) error {
	return p.check("profile", name, cfg, devices)
}

func (p Policy) check(kind, name string, cfg map[string]string, devices map[string]map[string]string) error {
	if !p.Active() {
		return nil
	}
	deny := func(key, value, why, rule string) error {
		return errdefs.Invalidf("Invalid value %q for config %q on %s %q of project %q: %s (%s=%s)",
			value, key, kind, name, p.Project, why, rule, p.value(rule))
	}
	if config.IsTrue(cfg["security.nesting"]) && p.value("restricted.containers.nesting") != "allow" {
		return deny("security.nesting", cfg["security.nesting"], "Container nesting is forbidden", "restricted.containers.nesting")
	}
	switch p.value("restricted.containers.privilege") {
	case "unprivileged", "isolated":
		if config.IsTrue(cfg["security.privileged"]) {
			return deny("security.privileged", cfg["security.privileged"], "Privileged containers are forbidden", "restricted.containers.privilege")
		}
	}
	if p.value("restricted.containers.privilege") == "isolated" && !config.IsTrue(cfg["security.idmap.isolated"]) {
		return deny("security.idmap.isolated", cfg["security.idmap.isolated"], "Non-isolated containers are forbidden", "restricted.containers.privilege")
	}
	if p.value("restricted.containers.lowlevel") != "allow" {
		for key, v := range cfg {
			if key == "raw.idmap" {
				if err := p.checkRawIDMap(v); err != nil {
					return deny(key, v, err.Error(), "restricted.containers.lowlevel")
				}
				continue
			}
			for _, prefix := range lowLevelPrefixes {
				if strings.HasPrefix(key, prefix) {
					return deny(key, v, "Low-level configuration is forbidden", "restricted.containers.lowlevel")
				}
			}
		}
	}
	for dev, d := range devices {
		if err := p.checkDevice(kind, name, dev, d); err != nil {
			return err
		}
	}
	return nil
}

// checkRawIDMap allows raw.idmap entries whose host ids all lie within
// restricted.idmap.uid / restricted.idmap.gid.
func (p Policy) checkRawIDMap(v string) error {
	entries, err := idmap.ParseRaw(v)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Isuid && !idsAllowed(p.Config["restricted.idmap.uid"], e.Hostid, e.Maprange) {
			return fmt.Errorf("host uids %d-%d are not in restricted.idmap.uid", e.Hostid, e.Hostid+e.Maprange-1)
		}
		if e.Isgid && !idsAllowed(p.Config["restricted.idmap.gid"], e.Hostid, e.Maprange) {
			return fmt.Errorf("host gids %d-%d are not in restricted.idmap.gid", e.Hostid, e.Hostid+e.Maprange-1)
		}
	}
	return nil
}

func idsAllowed(allowed string, start, n int64) bool {
	if allowed == "" {
		return false
	}
	for _, r := range strings.Split(allowed, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(r), "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil {
				continue
			}
		}
		if start >= a && start+n-1 <= b {
			return true
		}
	}
	return false
}

// blockAllowDevices are device types that are either blocked or allowed.
var blockAllowDevices = map[string]string{
	"unix-char": "restricted.devices.unix-char", "unix-block": "restricted.devices.unix-block",
	"gpu": "restricted.devices.gpu", "usb": "restricted.devices.usb", "pci": "restricted.devices.pci",
	"proxy": "restricted.devices.proxy", "unix-hotplug": "restricted.devices.unix-hotplug",
	"infiniband": "restricted.devices.infiniband",
}

func (p Policy) checkDevice(kind, owner, name string, d map[string]string) error {
	deny := func(why, rule string) error {
		return errdefs.Invalidf("Invalid device %q on %s %q of project %q: %s (%s=%s)",
			name, kind, owner, p.Project, why, rule, p.value(rule))
	}
	typ := d["type"]
	if rule, ok := blockAllowDevices[typ]; ok {
		if p.value(rule) != "allow" {
			return deny(fmt.Sprintf("%s devices are forbidden", typ), rule)
		}
		return nil
	}
	switch typ {
	case "disk":
		rule := "restricted.devices.disk"
		isRoot := d["path"] == "/" && d["pool"] != "" && d["source"] == ""
		switch p.value(rule) {
		case "block":
			if !isRoot {
				return deny("Only the root disk is allowed", rule)
			}
		case "managed":
			if d["pool"] == "" {
				return deny("Host path disks are forbidden: only disks from a storage pool are allowed", rule)
			}
		case "allow":
			if d["pool"] == "" && d["source"] != "" {
				if err := p.checkDiskPath(d["source"]); err != nil {
					return deny(err.Error(), "restricted.devices.disk.paths")
				}
			}
		}
	case "nic":
		rule := "restricted.devices.nic"
		switch p.value(rule) {
		case "block":
			return deny("Network devices are forbidden", rule)
		case "managed":
			if d["network"] == "" {
				return deny("Only network devices attached to a managed network are allowed", rule)
			}
		}
		if access := p.Config["restricted.networks.access"]; access != "" && d["network"] != "" {
			allowed := false
			for _, n := range strings.Split(access, ",") {
				allowed = allowed || strings.TrimSpace(n) == d["network"]
			}
			if !allowed {
				return deny(fmt.Sprintf("Network %q is not allowed", d["network"]), "restricted.networks.access")
			}
		}
	}
	return nil
}

// CheckDiskSource applies CheckInstance's rules for one disk device, name of
// instance owner, whose source is the canonical host path about to be
// mounted: the path checked when the config was stored can have been
// re-pointed through a symlink since. Who stored the device is not known
// then, so the rules bind everyone wherever a non-admin could have stored
// it: in a restricted project, and in one whose restricted.devices.disk=allow
// lets non-admins add host-path disks.
func CheckDiskSource(projectName string, projectCfg map[string]string, owner, name string, d map[string]string) error {
	floor := Policy{Project: projectName, Config: projectCfg}
	if !config.IsTrue(projectCfg["restricted"]) && floor.value("restricted.devices.disk") != "allow" {
		return nil
	}
	return floor.checkDevice("container", owner, name, d)
}

// checkDiskPath allows host paths under restricted.devices.disk.paths, with
// symlinks resolved first so a link inside an allowed directory cannot point
// the container at the rest of the host.
func (p Policy) checkDiskPath(source string) error {
	prefixes := p.Config["restricted.devices.disk.paths"]
	if prefixes == "" {
		return nil
	}
	resolved, err := filepath.EvalSymlinks(source)
	if err != nil {
		return fmt.Errorf("cannot resolve %q: %v", source, err)
	}
	for _, prefix := range strings.Split(prefixes, ",") {
		prefix = filepath.Clean(strings.TrimSpace(prefix))
		if rp, err := filepath.EvalSymlinks(prefix); err == nil {
			prefix = rp
		}
		if resolved == prefix || strings.HasPrefix(resolved, prefix+"/") {
			return nil
		}
	}
	return fmt.Errorf("Disk source path %q (resolved to %q) is not within restricted.devices.disk.paths", source, resolved)
}
