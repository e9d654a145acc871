package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/moat/moat/internal/errdefs"
)

// TestCheckDevicesDisk: the disk checks refuse, naming device and key,
// what would otherwise be stored and do nothing (keys of the root disk
// that the overlay root cannot honour, unknown keys), and accept the
// disks Moat implements.
func TestCheckDevicesDisk(t *testing.T) {
	root := map[string]string{"type": "disk", "path": "/", "pool": "default"}
	good := []map[string]map[string]string{
		{"root": root},
		{"root": root, "data": {"type": "disk", "source": "/srv", "path": "/mnt", "readonly": "true", "required": "false"}},
		// An empty value is an unset key.
		{"root": {"type": "disk", "path": "/", "pool": "default", "readonly": ""}},
	}
	for _, devs := range good {
		if err := CheckDevices(devs); err != nil {
			t.Errorf("%v: %v", devs, err)
		}
	}
	for _, tt := range []struct {
		dev  map[string]string
		want []string
	}{
		{map[string]string{"type": "disk", "path": "/", "pool": "default", "readonly": "true"}, []string{`"readonly"`, "root disk"}},
		{map[string]string{"type": "disk", "path": "/", "pool": "default", "readonly": "false"}, []string{`"readonly"`}},
		{map[string]string{"type": "disk", "path": "/", "pool": "default", "required": "false"}, []string{`"required"`, "root disk"}},
		{map[string]string{"type": "disk", "path": "/", "pool": "default", "source": "/srv"}, []string{`"source"`}},
		{map[string]string{"type": "disk", "path": "/"}, []string{`"pool"`}},
		{map[string]string{"type": "disk", "path": "/", "pool": "default", "size": "10GiB"}, []string{`"size"`}},
		{map[string]string{"type": "disk", "source": "/srv", "path": "/mnt", "size": "1GiB"}, []string{`"size"`}},
		{map[string]string{"type": "disk", "source": "/srv", "path": "/mnt", "bogus": "1"}, []string{`"bogus"`}},
		{map[string]string{"type": "disk", "source": "/srv", "path": "/mnt", "pool": "default"}, []string{`"pool"`}},
		{map[string]string{"type": "disk", "path": "/mnt"}, []string{`"source"`}},
	} {
		err := CheckDevices(map[string]map[string]string{"root": root, "dev1": tt.dev})
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%v: %v, want ErrInvalid", tt.dev, err)
			continue
		}
		for _, w := range append(tt.want, `"dev1"`) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q does not name %s", tt.dev, err, w)
			}
		}
	}
}

// TestCheckExpandedRoot: an instance needs exactly one root disk.
func TestCheckExpandedRoot(t *testing.T) {
	data := map[string]string{"type": "disk", "source": "/srv", "path": "/mnt"}
	err := CheckExpanded(nil, map[string]map[string]string{"data": data})
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "root disk") {
		t.Fatalf("no root disk: %v", err)
	}
	if err := CheckExpanded(nil, map[string]map[string]string{"data": data, "root": {"type": "disk", "path": "/", "pool": "p"}}); err != nil {
		t.Fatal(err)
	}
}

// TestLimitsMemoryRange: sizes the kernel cannot take as a signed 64-bit
// limit are refused at the check, not at the next start.
func TestLimitsMemoryRange(t *testing.T) {
	for _, ok := range []string{"4MiB", "512MiB", "7EiB", "9223372036854775807", "100%"} {
		if err := LimitsMemory(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"8EiB", "9EiB", "15EiB", "9223372036854775808", "18446744073709551615", "3MiB"} {
		if err := LimitsMemory(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	err := Instance.Check(map[string]string{"limits.memory": "9EiB"})
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), `"limits.memory"`) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("9EiB: %v", err)
	}
}
