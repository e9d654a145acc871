package lxcdriver

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat/moat/internal/idmap"
)

const hybridMountinfo = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const hybridPid1 = `5:devices:/
4:memory:/
3:pids:/init.scope
2:cpu,cpuacct:/
1:name=systemd:/init.scope
6:cpuset:/
0::/init.scope
`

const v2Mountinfo = `30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 23 0:28 / /mnt/with\040space rw - ext4 /dev/vda rw
`

func fakeControllers(v string) func(string) (string, error) {
	return func(string) (string, error) { return v, nil }
}

func TestParseCgroups(t *testing.T) {
	cg, err := parseCgroups(hybridMountinfo, hybridPid1, fakeControllers("hugetlb"))
	if err != nil {
		t.Fatal(err)
	}
	for ctrl, want := range map[string]int{"memory": 1, "pids": 1, "cpuacct": 1, "devices": 1, "hugetlb": 2} {
		if v, err := cg.version(ctrl); v != want || err != nil {
			t.Errorf("%s: v%d %v, want v%d", ctrl, v, err, want)
		}
	}
	if _, err := cg.version("rdma"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("rdma: %v", err)
	}
	got := map[string]string{}
	for _, h := range cg.hier {
		got[h.mount] = h.path("lxc.monitor.c")
	}
	// liblxc places containers beside systemd's /init.scope, not in it.
	for mount, want := range map[string]string{
		"/sys/fs/cgroup/pids":        "/sys/fs/cgroup/pids/lxc.monitor.c",
		"/sys/fs/cgroup/cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/lxc.monitor.c",
		"/sys/fs/cgroup/systemd":     "/sys/fs/cgroup/systemd/lxc.monitor.c",
		"/sys/fs/cgroup/unified":     "/sys/fs/cgroup/unified/lxc.monitor.c",
	} {
		if got[mount] != want {
			t.Errorf("%s: %q, want %q", mount, got[mount], want)
		}
	}

	cg, err = parseCgroups(v2Mountinfo, "0::/\n", fakeControllers("cpuset cpu io memory pids\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := cg.version("memory"); v != 2 || len(cg.hier) != 1 {
		t.Fatalf("pure v2: v%d, %d hierarchies", v, len(cg.hier))
	}
	if _, err := parseCgroups("", "0::/\n", fakeControllers("")); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("no cgroups: %v", err)
	}
}

// TestParseCgroupsInitScope: on a systemd host whose pid 1 sits in
// .../init.scope, the driver looks for monitor and payload cgroups where
// liblxc makes them, one level up; the controllers are those available
// there. (The test host's pid 1 is in "/", so only a fixture shows this.)
func TestParseCgroupsInitScope(t *testing.T) {
	var read []string
	readFile := func(p string) (string, error) {
		read = append(read, p)
		return "cpuset memory pids\n", nil
	}
	for pid1, want := range map[string]string{
		"0::/init.scope\n":                     "/sys/fs/cgroup/lxc.monitor.c",
		"0::/machine.slice/outer/init.scope\n": "/sys/fs/cgroup/machine.slice/outer/lxc.monitor.c",
		"0::/system.slice/notinit.scope\n":     "/sys/fs/cgroup/system.slice/notinit.scope/lxc.monitor.c",
		"0::/init.scope/inner\n":               "/sys/fs/cgroup/init.scope/inner/lxc.monitor.c",
	} {
		read = nil
		cg, err := parseCgroups(v2Mountinfo, pid1, readFile)
		if err != nil {
			t.Fatal(err)
		}
		if got := cg.hier[0].path("lxc.monitor.c"); got != want {
			t.Errorf("pid 1 in %q: monitor cgroup %q, want %q", pid1, got, want)
		}
		if wantCtl := filepath.Join(filepath.Dir(want), "cgroup.controllers"); len(read) != 1 || read[0] != wantCtl {
			t.Errorf("pid 1 in %q: controllers read from %v, want %s", pid1, read, wantCtl)
		}
	}
}

// TestDevicesVersion: device rules go where liblxc applies them, which on
// a pure v2 host is the unified tree although its cgroup.controllers
// never lists "devices".
func TestDevicesVersion(t *testing.T) {
	hybrid, _ := parseCgroups(hybridMountinfo, hybridPid1, fakeControllers(""))
	v2, _ := parseCgroups(v2Mountinfo, "0::/init.scope\n", fakeControllers("cpuset cpu io memory pids\n"))
	noDevV1, _ := parseCgroups(strings.ReplaceAll(hybridMountinfo, "rw,devices", "rw,rdma"), hybridPid1, fakeControllers(""))
	onlyV1, _ := parseCgroups("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "4:memory:/\n", fakeControllers(""))
	for name, tt := range map[string]struct {
		cg   *cgroups
		want int
	}{"hybrid": {hybrid, 1}, "pure v2": {v2, 2}, "hybrid without v1 devices": {noDevV1, 2}, "v1 without devices": {onlyV1, 0}} {
		v, err := tt.cg.devicesVersion()
		if v != tt.want || (tt.want == 0) != errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: v%d %v, want v%d", name, v, err, tt.want)
		}
	}
}

func TestLimitItems(t *testing.T) {
	v1, _ := parseCgroups(hybridMountinfo, hybridPid1, fakeControllers(""))
	v2, _ := parseCgroups(v2Mountinfo, "0::/\n", fakeControllers("cpuset memory pids"))
	hard := Limits{Memory: 1 << 30, Processes: 100, CPU: "0-1"}
	soft := Limits{Memory: 1 << 30, MemoryEnforce: MemorySoft}
	tests := []struct {
		name string
		cg   *cgroups
		l    Limits
		live bool
		want string
	}{
		{"v1 hard", v1, hard, false, "lxc.cgroup.memory.limit_in_bytes=1073741824 lxc.cgroup.memory.soft_limit_in_bytes=-1 lxc.cgroup.pids.max=100 lxc.cgroup.cpuset.cpus=0-1"},
		{"v2 hard", v2, hard, false, "lxc.cgroup2.memory.max=1073741824 lxc.cgroup2.memory.low=0 lxc.cgroup2.pids.max=100 lxc.cgroup2.cpuset.cpus=0-1"},
		{"v1 soft", v1, soft, false, "lxc.cgroup.memory.limit_in_bytes=-1 lxc.cgroup.memory.soft_limit_in_bytes=1073741824"},
		{"v2 soft", v2, soft, false, "lxc.cgroup2.memory.max=max lxc.cgroup2.memory.low=1073741824"},
		{"unlimited at start", v1, Limits{}, false, ""},
		{"v2 unlimited live", v2, Limits{CPU: "1-1"}, true, "lxc.cgroup2.memory.max=max lxc.cgroup2.memory.low=0 lxc.cgroup2.pids.max=max lxc.cgroup2.cpuset.cpus=1-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := tt.cg.limitItems("c1", tt.l, tt.live)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range items {
				got = append(got, it.configKey()+"="+it.value)
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Fatalf("got  %s\nwant %s", s, tt.want)
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	good := Spec{
		Name: "c1", LXCPath: "/var/lib/moat/containers", Rootfs: "/var/lib/moat/storage/c1/rootfs",
		IDMap: idmap.Set{{Isuid: true, Isgid: true, Hostid: 1000000, Maprange: 65536}},
	}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Spec){
		"newline in rootfs":     func(s *Spec) { s.Rootfs = "/x\nlxc.include = /etc/passwd" },
		"relative rootfs":       func(s *Spec) { s.Rootfs = "rootfs" },
		"unclean path":          func(s *Spec) { s.LXCPath = "/var/lib/../tmp" },
		"bad name":              func(s *Spec) { s.Name = "../c1" },
		"privileged with map":   func(s *Spec) { s.Privileged = true },
		"no map":                func(s *Spec) { s.IDMap = nil },
		"root unmapped":         func(s *Spec) { s.IDMap = idmap.Set{{Isuid: true, Isgid: true, Hostid: 1000000, Nsid: 1, Maprange: 10}} },
		"mount over root":       func(s *Spec) { s.Mounts = []Mount{{Source: "/srv", Path: "/"}} },
		"mount control char":    func(s *Spec) { s.Mounts = []Mount{{Source: "/srv", Path: "/a\tb"}} },
		"device type":           func(s *Spec) { s.Devices = []Device{{Type: 'x', Path: "/dev/x"}} },
		"device setuid mode":    func(s *Spec) { s.Devices = []Device{{Type: CharDevice, Path: "/dev/x", Mode: 0o4666}} },
		"device uid unmapped":   func(s *Spec) { s.Devices = []Device{{Type: CharDevice, Path: "/dev/x", UID: 65536}} },
		"device gid unmapped":   func(s *Spec) { s.Devices = []Device{{Type: CharDevice, Path: "/dev/x", GID: 1 << 31}} },
		"cpu count zero":        func(s *Spec) { s.Limits.CPU = "0" },
		"cpu garbage":           func(s *Spec) { s.Limits.CPU = "1;2" },
		"negative memory":       func(s *Spec) { s.Limits.Memory = -1 },
		"unknown enforce":       func(s *Spec) { s.Limits.MemoryEnforce = "maybe" },
		"hostname with newline": func(s *Spec) { s.Hostname = "a\nb" },
	}
	for name, mutate := range bad {
		t.Run(name, func(t *testing.T) {
			s := good
			mutate(&s)
			if err := s.validate(); !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestRenderConfig(t *testing.T) {
	cg, _ := parseCgroups(hybridMountinfo, hybridPid1, fakeControllers(""))
	s := Spec{
		Name: "c1", LXCPath: "/l", Rootfs: "/r",
		IDMap:   idmap.Set{{Isuid: true, Hostid: 1065536, Maprange: 65536}, {Isgid: true, Hostid: 1065536, Maprange: 65536}},
		Mounts:  []Mount{{Source: "/", Path: "/mnt/a b", ReadOnly: true}},
		Devices: []Device{{Type: BlockDevice, Path: "/dev/sdz", Major: 8, Minor: 16}},
	}
	conf, err := renderConfig(&s, cg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"lxc.idmap = u 0 1065536 65536\n",
		"lxc.idmap = g 0 1065536 65536\n",
		"lxc.mount.auto = proc:mixed sys:mixed cgroup:rw:force\n",
		"lxc.cgroup.devices.deny = a\n",
		"lxc.cgroup.devices.allow = b 8:16 rwm\n",
		// Hex of "/" to "/mnt/a b" read-only, then /l/c1/dev.0 to /dev/sdz.
		"lxc.hook.start-host = /proc/$PPID/exe moat-hotplug env u mr:2f:2f6d6e742f612062 mw:2f6c2f63312f6465762e30:2f6465762f73647a --\n",
		"lxc.signal.halt = 30\n",
		"lxc.net.0.type = empty\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if strings.Contains(conf, "sys_boot") {
		t.Error("unprivileged container drops sys_boot (needed for its own reboot)")
	}
	// The overlay moatd mounts already shows shifted ids: idmapping it
	// again would shift twice.
	if strings.Contains(conf, "lxc.rootfs.options") {
		t.Error("rootfs is idmapped by liblxc on top of the overlay")
	}

	s.Nesting = true
	if conf, _ := renderConfig(&s, cg); !strings.Contains(conf, "lxc.mount.auto = proc:rw sys:rw cgroup:rw:force\n") {
		t.Error("nesting does not get writable proc and sys")
	}

	s.Privileged, s.IDMap, s.Nesting = true, nil, false
	conf, err = renderConfig(&s, cg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed\n", "sys_module", "sys_boot"} {
		if !strings.Contains(conf, want) {
			t.Errorf("privileged config lacks %q", want)
		}
	}
	if strings.Contains(conf, "lxc.idmap") || strings.Contains(conf, "idmap=container") {
		t.Error("privileged config has an idmap")
	}

	// Only the admin's explicit force gets here (the config layer refuses
	// privileged + nesting otherwise); then nesting must take effect.
	s.Nesting = true
	if conf, _ := renderConfig(&s, cg); !strings.Contains(conf, "lxc.mount.auto = proc:rw sys:rw cgroup:rw:force\n") {
		t.Error("forced privileged nesting does not get writable proc and sys")
	}
}

// TestRenderConfigDeviceCgroup: the device allow-list is written for the
// device cgroup liblxc uses, on a hybrid and on a pure v2 host, for
// privileged and unprivileged containers alike, with nothing for the
// other version.
func TestRenderConfigDeviceCgroup(t *testing.T) {
	hybrid, _ := parseCgroups(hybridMountinfo, hybridPid1, fakeControllers(""))
	v2, _ := parseCgroups(v2Mountinfo, "0::/init.scope\n", fakeControllers("cpuset cpu io memory pids\n"))
	unpriv := Spec{Name: "c1", LXCPath: "/l", Rootfs: "/r",
		IDMap:   idmap.Set{{Isuid: true, Isgid: true, Hostid: 1065536, Maprange: 65536}},
		Devices: []Device{{Type: CharDevice, Path: "/dev/x", Major: 10, Minor: 99}},
		Limits:  Limits{Memory: 64 << 20}}
	priv := unpriv
	priv.Privileged, priv.IDMap = true, nil
	for _, tt := range []struct {
		name      string
		cg        *cgroups
		s         Spec
		key, none string
	}{
		{"hybrid unprivileged", hybrid, unpriv, "lxc.cgroup.devices", "lxc.cgroup2.devices"},
		{"hybrid privileged", hybrid, priv, "lxc.cgroup.devices", "lxc.cgroup2.devices"},
		{"pure v2 unprivileged", v2, unpriv, "lxc.cgroup2.devices", "lxc.cgroup.devices"},
		{"pure v2 privileged", v2, priv, "lxc.cgroup2.devices", "lxc.cgroup.devices"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := renderConfig(&tt.s, tt.cg)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{tt.key + ".deny = a\n", tt.key + ".allow = c 1:3 rwm\n", tt.key + ".allow = c 10:99 rwm\n"} {
				if !strings.Contains(conf, want) {
					t.Errorf("config lacks %q", want)
				}
			}
			if strings.Contains(conf, tt.none+".") {
				t.Errorf("config has %s rules:\n%s", tt.none, conf)
			}
		})
	}
}
