package project

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/internal/errdefs"
)

type dev = map[string]map[string]string

func TestDelegationFloor(t *testing.T) {
	unrestricted := map[string]string{}
	dangerous := []struct {
		name string
		cfg  map[string]string
		devs dev
		word string
	}{
		{"privileged", map[string]string{"security.privileged": "true"}, nil, "security.privileged"},
		{"nesting", map[string]string{"security.nesting": "true"}, nil, "security.nesting"},
		{"raw.lxc", map[string]string{"raw.lxc": "lxc.apparmor.profile=unconfined"}, nil, "raw.lxc"},
		{"raw.idmap", map[string]string{"raw.idmap": "both 0 0"}, nil, "raw.idmap"},
		{"idmap base", map[string]string{"security.idmap.base": "0"}, nil, "security.idmap.base"},
		{"host path", nil, dev{"etc": {"type": "disk", "source": "/etc", "path": "/mnt"}}, "Host path"},
		{"unix-char", nil, dev{"kmsg": {"type": "unix-char", "path": "/dev/kmsg"}}, "unix-char"},
		{"gpu", nil, dev{"g": {"type": "gpu"}}, "gpu"},
	}
	for _, c := range dangerous {
		// A confined caller in an unrestricted project is held to the floor.
		err := Policy{Project: "p", Config: unrestricted}.CheckInstance("c1", c.cfg, c.devs)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.word) ||
			!strings.Contains(err.Error(), `"c1"`) || !strings.Contains(err.Error(), `"p"`) {
			t.Errorf("%s: confined caller got %v", c.name, err)
		}
		// A full admin in the same project is not.
		if err := (Policy{Project: "p", Config: unrestricted, Admin: true}).CheckInstance("c1", c.cfg, c.devs); err != nil {
			t.Errorf("%s: admin refused: %v", c.name, err)
		}
		// In a restricted project the admin is held to it too.
		if err := (Policy{Project: "p", Config: map[string]string{"restricted": "true"}, Admin: true}).CheckInstance("c1", c.cfg, c.devs); err == nil {
			t.Errorf("%s: allowed for an admin in a restricted project", c.name)
		}
	}
	// The legitimate path: an unprivileged container with a pool root disk.
	ok := Policy{Project: "p", Config: unrestricted}
	if err := ok.CheckInstance("c1", map[string]string{"limits.memory": "1GiB", "security.idmap.isolated": "true"},
		dev{"root": {"type": "disk", "path": "/", "pool": "default"}}); err != nil {
		t.Fatalf("ordinary container refused: %v", err)
	}
}

func TestExplicitAllow(t *testing.T) {
	p := Policy{Project: "p", Config: map[string]string{
		"restricted.containers.nesting": "allow", "restricted.containers.privilege": "allow",
		"restricted.containers.lowlevel": "allow", "restricted.devices.unix-char": "allow",
	}}
	if err := p.CheckInstance("c", map[string]string{"security.nesting": "true", "security.privileged": "true", "raw.lxc": "x"},
		dev{"k": {"type": "unix-char", "path": "/dev/kmsg"}}); err != nil {
		t.Fatalf("explicitly allowed config refused: %v", err)
	}
}

func TestIsolatedPrivilege(t *testing.T) {
	p := Policy{Project: "p", Config: map[string]string{"restricted": "true", "restricted.containers.privilege": "isolated"}, Admin: true}
	if err := p.CheckInstance("c", map[string]string{}, nil); err == nil || !strings.Contains(err.Error(), "security.idmap.isolated") {
		t.Fatalf("non-isolated container in an isolated project: %v", err)
	}
	if err := p.CheckInstance("c", map[string]string{"security.idmap.isolated": "true"}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRawIDMapWithinAllowedIDs(t *testing.T) {
	p := Policy{Project: "user-1000", Config: map[string]string{"restricted": "true", "restricted.idmap.uid": "1000", "restricted.idmap.gid": "1000,2000-2009"}}
	if err := p.CheckInstance("c", map[string]string{"raw.idmap": "uid 1000 1000\ngid 2000-2009 10-19"}, nil); err != nil {
		t.Fatalf("own ids refused: %v", err)
	}
	for _, raw := range []string{"uid 0 0", "both 2000 2000", "gid 2005-2010 5-10", "uid 999-1000 0-1"} {
		if err := p.CheckInstance("c", map[string]string{"raw.idmap": raw}, nil); err == nil {
			t.Errorf("raw.idmap %q outside the allowed ids accepted", raw)
		}
	}
}

func TestDiskPaths(t *testing.T) {
	home := t.TempDir()
	outside := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	escape := filepath.Join(home, "escape")
	if err := os.Symlink(outside, escape); err != nil {
		t.Fatal(err)
	}
	p := Policy{Project: "p", Config: map[string]string{"restricted": "true", "restricted.devices.disk": "allow", "restricted.devices.disk.paths": home}}
	disk := func(src string) dev { return dev{"d": {"type": "disk", "source": src, "path": "/mnt"}} }
	if err := p.CheckInstance("c", nil, disk(filepath.Join(home, "data"))); err != nil {
		t.Fatalf("path inside the allowed prefix refused: %v", err)
	}
	for _, src := range []string{outside, escape, home + "x", filepath.Join(home, "..")} {
		if err := p.CheckInstance("c", nil, disk(src)); err == nil {
			t.Errorf("disk source %s accepted", src)
		}
	}
	blocked := Policy{Project: "p", Config: map[string]string{"restricted": "true", "restricted.devices.disk": "block"}}
	if err := blocked.CheckInstance("c", nil, dev{"root": {"type": "disk", "path": "/", "pool": "default"}}); err != nil {
		t.Fatalf("root disk refused under block: %v", err)
	}
	if err := blocked.CheckInstance("c", nil, dev{"data": {"type": "disk", "path": "/data", "pool": "default", "source": "vol"}}); err == nil {
		t.Fatal("non-root disk accepted under block")
	}
}

func TestNICs(t *testing.T) {
	p := Policy{Project: "p", Config: map[string]string{"restricted": "true", "restricted.networks.access": "br-a"}}
	if err := p.CheckInstance("c", nil, dev{"eth0": {"type": "nic", "network": "br-a"}}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []map[string]string{{"type": "nic", "network": "br-b"}, {"type": "nic", "nictype": "bridged", "parent": "br0"}} {
		if err := p.CheckInstance("c", nil, dev{"eth0": d}); err == nil {
			t.Errorf("nic %v accepted", d)
		}
	}
}
