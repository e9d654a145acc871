package main

import (
	"maps"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
)

// apiProfile reads a profile through the API, not the CLI.
func apiProfile(t *testing.T, c *cli, name string) api.Profile {
	t.Helper()
	var p api.Profile
	res := c.d.Do("GET", "/1.0/profiles/"+name, nil)
	if res.Status != 200 {
		t.Fatalf("GET profile %s: %d %s", name, res.Status, res.Raw)
	}
	res.Metadata(t, &p)
	return p
}

// TestProfileUnsetAndDeviceCommands: profile unset and profile device
// list/show/get/set, each checked by its output and through the API.
func TestProfileUnsetAndDeviceCommands(t *testing.T) {
	c := newCLI(t)
	host := t.TempDir()
	c.ok("profile", "create", "pc")
	c.ok("profile", "set", "pc", "user.a=1", "user.b=2")
	if out := c.ok("profile", "unset", "pc", "user.a"); out != "" {
		t.Fatalf("profile unset printed %q", out)
	}
	if out := c.ok("profile", "get", "pc", "user.a"); out != "\n" {
		t.Fatalf("profile get after unset: %q", out)
	}
	if cfg := apiProfile(t, c, "pc").Config; !maps.Equal(cfg, map[string]string{"user.b": "2"}) {
		t.Fatalf("profile config after unset: %v", cfg)
	}
	c.errs(`no config key "user.a"`, "profile", "unset", "pc", "user.a")

	if out := c.ok("profile", "device", "list", "pc"); out != "" {
		t.Fatalf("device list of a profile without devices: %q", out)
	}
	c.ok("profile", "device", "add", "pc", "d1", "disk", "source="+host, "path=/mnt/a")
	c.ok("profile", "device", "add", "pc", "d0", "disk", "source="+host, "path=/mnt/z")
	if out := c.ok("profile", "device", "list", "pc"); out != "d0\nd1\n" {
		t.Fatalf("profile device list: %q", out)
	}
	var devs map[string]map[string]string
	if err := yaml.Unmarshal([]byte(c.ok("profile", "device", "show", "pc")), &devs); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"type": "disk", "source": host, "path": "/mnt/a"}; len(devs) != 2 || !maps.Equal(devs["d1"], want) {
		t.Fatalf("profile device show: %v", devs)
	}
	if out := c.ok("profile", "device", "get", "pc", "d1", "path"); out != "/mnt/a\n" {
		t.Fatalf("profile device get: %q", out)
	}
	c.ok("profile", "device", "set", "pc", "d1", "readonly=true")
	c.ok("profile", "device", "set", "pc", "d1", "path", "/mnt/b")
	want := map[string]string{"type": "disk", "source": host, "path": "/mnt/b", "readonly": "true"}
	if got := apiProfile(t, c, "pc").Devices["d1"]; !maps.Equal(got, want) {
		t.Fatalf("profile device d1 after set: %v", got)
	}
	if out := c.ok("profile", "device", "get", "pc", "d1", "readonly"); out != "true\n" {
		t.Fatalf("profile device get readonly: %q", out)
	}
	// Refusals change nothing: a missing device, a bad value.
	c.errs(`"nosuch" doesn't exist`, "profile", "device", "get", "pc", "nosuch", "path")
	c.errs(`"nosuch" doesn't exist`, "profile", "device", "set", "pc", "nosuch", "path=/x")
	c.errs("readonly", "profile", "device", "set", "pc", "d1", "readonly=maybe")
	if got := apiProfile(t, c, "pc").Devices["d1"]; !maps.Equal(got, want) {
		t.Fatalf("profile device d1 after refused sets: %v", got)
	}
}

// TestConfigDeviceGetSet: config device get/set on an instance's own
// devices, checked through the API; a device from a profile is not the
// instance's to change.
func TestConfigDeviceGetSet(t *testing.T) {
	c, _ := imageCLI(t)
	host := t.TempDir()
	c.ok("init", "bb", "k1")
	c.ok("config", "device", "add", "k1", "d2", "disk", "source="+host, "path=/mnt/x")
	if out := c.ok("config", "device", "get", "k1", "d2", "path"); out != "/mnt/x\n" {
		t.Fatalf("config device get: %q", out)
	}
	c.ok("config", "device", "set", "k1", "d2", "readonly=true")
	c.ok("config", "device", "set", "k1", "d2", "path", "/mnt/y")
	var inst api.Instance
	res := c.d.Do("GET", "/1.0/instances/k1", nil)
	if res.Status != 200 {
		t.Fatalf("GET k1: %d %s", res.Status, res.Raw)
	}
	res.Metadata(t, &inst)
	want := map[string]string{"type": "disk", "source": host, "path": "/mnt/y", "readonly": "true"}
	if !maps.Equal(inst.Devices["d2"], want) {
		t.Fatalf("k1 device d2 after set: %v", inst.Devices["d2"])
	}
	if out := c.ok("config", "device", "get", "k1", "d2", "readonly"); out != "true\n" {
		t.Fatalf("config device get readonly: %q", out)
	}
	c.errs(`"nosuch" doesn't exist`, "config", "device", "get", "k1", "nosuch", "path")
	c.errs("readonly", "config", "device", "set", "k1", "d2", "readonly=maybe")
	// root comes from the default profile: not the instance's own device.
	c.errs(`device "root" comes from a profile`, "config", "device", "set", "k1", "root", "pool=other")
	c.errs(`device "root" comes from a profile`, "config", "device", "remove", "k1", "root")
	if out := c.ok("config", "device", "get", "k1", "root", "pool"); out != "default\n" {
		t.Fatalf("config device get of a profile's device: %q", out)
	}
	res = c.d.Do("GET", "/1.0/instances/k1", nil)
	res.Metadata(t, &inst)
	if !maps.Equal(inst.Devices["d2"], want) || len(inst.Devices) != 1 || inst.ExpandedDevices["root"]["pool"] != "default" {
		t.Fatalf("k1 devices after refused sets: %v, expanded %v", inst.Devices, inst.ExpandedDevices)
	}
}
