package instance

import (
	"errors"
	"strings"
	"testing"

	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/store"
)

// TestCheckDeviceOwners: a unix device's uid and gid must be mapped by
// the container's map; a privileged container (no map) takes any.
func TestCheckDeviceOwners(t *testing.T) {
	set := testHost.Isolated(1065536, 65536)
	ok := store.Devices{
		"a":    {"type": "unix-char", "source": "/dev/null", "uid": "1000", "gid": "65535"},
		"b":    {"type": "unix-block", "source": "/dev/loop0"},
		"disk": {"type": "disk", "source": "/srv", "path": "/mnt", "uid": "99999999"},
	}
	if err := CheckDeviceOwners(set, ok); err != nil {
		t.Fatal(err)
	}
	for key, dev := range map[string]map[string]string{
		"uid": {"type": "unix-char", "source": "/dev/null", "uid": "65536"},
		"gid": {"type": "unix-block", "source": "/dev/loop0", "gid": "4294967294"},
	} {
		err := CheckDeviceOwners(set, store.Devices{"x": dev})
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), `"x"`) || !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Errorf("unmapped %s: %v", key, err)
		}
		if err := CheckDeviceOwners(nil, store.Devices{"x": dev}); err != nil {
			t.Errorf("privileged, %s: %v", key, err)
		}
	}
}

// TestBuildSpecUnixDevices: uid, gid and mode reach the driver; a missing
// source leaves the device out with required=false and is an error naming
// the device otherwise.
func TestBuildSpecUnixDevices(t *testing.T) {
	set := testHost.Isolated(1065536, 65536)
	args := SpecArgs{Name: "c1", LXCName: "c1", LXCPath: "/l", Rootfs: "/r", IDMap: set, Config: map[string]string{},
		Devices: store.Devices{
			"null": {"type": "unix-char", "source": "/dev/null", "path": "/dev/n", "uid": "1000", "gid": "33", "mode": "0640"},
			"opt":  {"type": "unix-char", "source": "/dev/moat-no-such", "path": "/dev/o", "required": "false"},
		}}
	s, err := BuildSpec(args)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Devices) != 1 || s.Devices[0].UID != 1000 || s.Devices[0].GID != 33 || s.Devices[0].Mode != 0o640 || s.Devices[0].Major != 1 || s.Devices[0].Minor != 3 {
		t.Fatalf("devices %+v", s.Devices)
	}
	args.Devices["opt"]["required"] = "true"
	if _, err := BuildSpec(args); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), `"opt"`) || !strings.Contains(err.Error(), "/dev/moat-no-such") {
		t.Fatalf("missing required device: %v", err)
	}
	delete(args.Devices["opt"], "required")
	if _, err := BuildSpec(args); err == nil || !strings.Contains(err.Error(), `"opt"`) {
		t.Fatalf("missing device, required by default: %v", err)
	}
}
