package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/moat/moat/internal/errdefs"
)

func TestServerSchema(t *testing.T) {
	good := []map[string]string{
		{},
		{"core.https_address": "127.0.0.1:8443"},
		{"core.https_address": "[::1]:9443"},
		{"core.https_address": ":8443"},
		{"core.https_address": "moat.example"},
		{"core.https_address": "::1"},
		{"core.remote_token_expiry": "1H 30M", "cluster.join_token_expiry": "2d"},
		{"user.anything": "goes", "core.remote_token_expiry": ""},
	}
	for _, cfg := range good {
		if err := Server.Check(cfg); err != nil {
			t.Errorf("Check(%v) = %v", cfg, err)
		}
	}
	bad := []struct {
		cfg  map[string]string
		word string
	}{
		{map[string]string{"core.bogus": "1"}, `"core.bogus"`},
		{map[string]string{"user.": "x"}, `"user."`},
		{map[string]string{"core.https_address": "127.0.0.1:0"}, "port"},
		{map[string]string{"core.https_address": "bad host:1"}, "spaces"},
		{map[string]string{"core.https_address": "-x-:80"}, "neither"},
		{map[string]string{"core.remote_token_expiry": "15 minutes"}, "core.remote_token_expiry"},
		{map[string]string{"core.remote_token_expiry": "1M 1M"}, "core.remote_token_expiry"},
	}
	for _, b := range bad {
		err := Server.Check(b.cfg)
		if err == nil || !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), b.word) {
			t.Errorf("Check(%v) = %v, want invalid mentioning %s", b.cfg, err, b.word)
		}
	}
	if got := Server.Get(map[string]string{}, "core.remote_token_expiry"); got != "15M" {
		t.Errorf("default token expiry = %q, want the hardening guide's 15M", got)
	}
}

func TestProjectSchema(t *testing.T) {
	if err := Project.Check(map[string]string{
		"features.images": "true", "restricted": "true", "restricted.containers.privilege": "isolated",
		"restricted.devices.disk.paths": "/home/a,/srv", "restricted.idmap.uid": "1000,2000-2010",
		"limits.memory": "2GiB", "limits.processes": "500", "limits.instances": "3",
	}); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"restricted.containers.privilege": "root",
		"restricted.devices.disk.paths":   "relative/path",
		"restricted.idmap.uid":            "10-5",
		"limits.memory":                   "-1",
		"limits.processes":                "-1",
		"features.images":                 "maybe",
		"restricted.devices.gpu":          "managed",
	} {
		if err := Project.Check(map[string]string{k: v}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s accepted or unnamed: %v", k, v, err)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "512MiB": 512 << 20, "1GB": 1e9, "10kB": 10000, "7B": 7, "1EiB": 1 << 60} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1.5GiB", "-1", "5XB", "99999999999EiB", "1 GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestName(t *testing.T) {
	for _, ok := range []string{"a", "p1", "my_proj.2", strings.Repeat("x", 63)} {
		if err := Name(ok); err != nil {
			t.Errorf("Name(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", ".x", "a/b", "a b", "a?b", strings.Repeat("x", 64), "é"} {
		if err := Name(bad); err == nil {
			t.Errorf("Name(%q) accepted", bad)
		}
	}
}

func TestMergeAndNormalize(t *testing.T) {
	got := Merge(map[string]string{"a": "1", "b": "2"}, map[string]string{"b": "", "c": "3"})
	if len(got) != 2 || got["a"] != "1" || got["c"] != "3" {
		t.Fatalf("Merge = %v", got)
	}
}

func FuzzServerCheck(f *testing.F) {
	f.Add("core.https_address", "127.0.0.1:8443")
	f.Add("core.remote_token_expiry", "1H 2M")
	f.Add("user.x", "y")
	f.Fuzz(func(t *testing.T, k, v string) {
		err := Server.Check(map[string]string{k: v})
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("non-invalid error class: %v", err)
		}
	})
}
