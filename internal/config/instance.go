package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/idmap"
)

// ForcePrivilegedNesting is the key an admin sets to "true" to run a
// privileged container with nesting enabled. The hardening guide warns that
// this combination gives root on the host, so Moat refuses it unless this
// key says the admin knows.
const ForcePrivilegedNesting = "security.privileged.allow_nesting"

// Instance is the schema of instance and profile config. volatile.* keys
// are declared here so they can be stored and read, but users never set
// or remove them (the daemon's instance config check refuses it).
var Instance = NewSchema("instance", map[string]Key{
	"security.privileged":        {Default: "false", Validate: Bool},
	"security.nesting":           {Default: "false", Validate: Bool},
	ForcePrivilegedNesting:       {Default: "false", Validate: Bool},
	"security.idmap.isolated":    {Default: "false", Validate: Bool},
	"security.idmap.size":        {Validate: idmapSize},
	"security.idmap.base":        {Validate: Uint(idmap.MaxID)},
	"raw.idmap":                  {Validate: rawIDMap},
	"limits.cpu":                 {Validate: LimitsCPU},
	"limits.memory":              {Validate: LimitsMemory},
	"limits.memory.enforce":      {Default: "hard", Validate: OneOf("hard", "soft")},
	"limits.processes":           {Validate: limitsProcesses},
	"security.protection.delete": {Default: "false", Validate: Bool},
	// Moat never offers /dev/lxd to containers and always applies its
	// syscall deny list; these keys exist so hardening profiles written
	// for LXD apply unchanged, and refuse the values Moat cannot honour.
	"security.devlxd":                {Default: "false", Validate: fixedValue("false", "Moat does not provide /dev/lxd to containers")},
	"security.syscalls.deny_default": {Default: "true", Validate: fixedValue("true", "the default syscall deny list is always applied")},
	"boot.autostart":                 {Validate: Bool},
	"boot.autostart.delay":           {Validate: Uint(1 << 20)},
	"boot.autostart.priority":        {Validate: Uint(1 << 20)},
	"boot.host_shutdown_timeout":     {Validate: Uint(1 << 20)},
	"boot.stop.priority":             {Validate: Uint(1 << 20)},
	"volatile.base_image":            {},
	"volatile.uuid":                  {},
	"volatile.idmap.base":            {},
	"volatile.idmap.current":         {},
	"volatile.idmap.next":            {},
	"volatile.last_state.idmap":      {},
	"volatile.last_state.power":      {},
})

func init() {
	Instance.freeform = append(Instance.freeform, "user.", "environment.", "image.")
}

// fixedValue accepts only the boolean want; why says why nothing else is.
func fixedValue(want, why string) func(string) error {
	return func(v string) error {
		b, ok := ParseBool(v)
		if !ok {
			return errors.New("must be a boolean (true or false)")
		}
		if strconv.FormatBool(b) != want {
			return errors.New(why)
		}
		return nil
	}
}

// IsVolatile reports keys only the daemon sets.
func IsVolatile(key string) bool { return strings.HasPrefix(key, "volatile.") }

func idmapSize(v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 {
		return errors.New("must be a positive number of ids")
	}
	if n > idmap.MaxID {
		return fmt.Errorf("must be at most %d", uint64(idmap.MaxID))
	}
	return nil
}

func rawIDMap(v string) error {
	_, err := idmap.ParseRaw(v)
	return err
}

func limitsProcesses(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return errors.New("must be a positive integer (unset the key for no limit)")
	}
	if n < 1 {
		return errors.New("must be at least 1 (unset the key for no limit)")
	}
	if n > 1<<31 {
		return fmt.Errorf("must be at most %d", int64(1<<31))
	}
	return nil
}

// OnlineCPUsFile lists the host's online CPUs, what limits.cpu is checked
// against. runtime.NumCPU() would not do: it counts only the CPUs moatd
// itself may run on, which a service manager's affinity can narrow.
var OnlineCPUsFile = "/sys/devices/system/cpu/online"

// hostCPUs returns the host's online CPUs in file order and its text;
// should the file be unreadable, the CPUs moatd may run on.
func hostCPUs() ([]int, string) {
	if b, err := os.ReadFile(OnlineCPUsFile); err == nil {
		text := strings.TrimSpace(string(b))
		if cpus, err := parseCPUSet(text); err == nil && len(cpus) > 0 {
			return cpus, text
		}
	}
	n := runtime.NumCPU()
	cpus := make([]int, n)
	for i := range cpus {
		cpus[i] = i
	}
	return cpus, fmt.Sprintf("0-%d", n-1)
}

// parseCPUSet expands a cpuset list such as "0-3,5".
func parseCPUSet(v string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(v, ",") {
		a, b, err := cpuRange(part)
		if err != nil {
			return nil, err
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// cpuRange reads one element of a cpuset list: "5" or "0-3". Only digits
// are numbers: strconv.Atoi would also take "+1", which the kernel's
// cpuset list (and the driver) refuse at start, after the config was
// stored.
func cpuRange(part string) (int, int, error) {
	lo, hi, isRange := strings.Cut(part, "-")
	a, ok1 := cpuNumber(lo)
	b, ok2 := a, true
	if isRange {
		b, ok2 = cpuNumber(hi)
	}
	if !ok1 || !ok2 || b < a || b > 1<<16 {
		return 0, 0, fmt.Errorf("bad CPU set element %q", part)
	}
	return a, b, nil
}

func cpuNumber(s string) (int, bool) {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// LimitsCPU accepts a CPU count from 1 to the host's online CPUs, or a
// cpuset ("0-3,5") naming only online CPUs.
func LimitsCPU(v string) error {
	online, text := hostCPUs()
	if !strings.ContainsAny(v, ",-") {
		n, ok := cpuNumber(v)
		if !ok {
			return errors.New("must be a CPU count or a CPU set such as 0-3,5")
		}
		if n < 1 || n > len(online) {
			return fmt.Errorf("CPU count must be from 1 to %d (the host's online CPUs)", len(online))
		}
		return nil
	}
	isOnline := make(map[int]bool, len(online))
	for _, c := range online {
		isOnline[c] = true
	}
	// Each element is checked as it is read, never expanded into a list:
	// a range stops at its first CPU that is not online, so no element
	// costs more than the host's CPU count. (Expanding a request body's
	// worth of "0-65536," elements took tens of gigabytes.)
	for _, part := range strings.Split(v, ",") {
		a, b, err := cpuRange(part)
		if err != nil {
			return err
		}
		for c := a; c <= b; c++ {
			if !isOnline[c] {
				return fmt.Errorf("CPU %d is not an online CPU of the host (online: %s)", c, text)
			}
		}
	}
	return nil
}

// CPUCount is how many CPUs a limits.cpu value grants: the count itself,
// or the number of distinct CPUs a cpuset names ("0,0" and "0-3,2-5"
// count each CPU once; the ranges are merged, never listed). "" is 0.
func CPUCount(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if !strings.ContainsAny(v, ",-") {
		n, ok := cpuNumber(v)
		if !ok {
			return 0, fmt.Errorf("bad limits.cpu %q", v)
		}
		return int64(n), nil
	}
	var spans [][2]int
	for _, part := range strings.Split(v, ",") {
		a, b, err := cpuRange(part)
		if err != nil {
			return 0, err
		}
		spans = append(spans, [2]int{a, b})
	}
	slices.SortFunc(spans, func(x, y [2]int) int { return cmp.Compare(x[0], y[0]) })
	var n int64
	end := -1 // the last CPU counted
	for _, sp := range spans {
		if sp[1] <= end {
			continue
		}
		n += int64(sp[1] - max(sp[0], end+1) + 1)
		end = sp[1]
	}
	return n, nil
}

// MinMemory is the smallest limits.memory accepted: below it not even init
// and a shell fit.
const MinMemory = 4 << 20

// LimitsMemory accepts a size ("512MiB") from MinMemory to MaxByteSize,
// or a percentage of host memory from 1% to 100%.
func LimitsMemory(v string) error {
	if p, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 {
			return errors.New("percentage must be a whole number from 1% to 100%")
		}
		return nil
	}
	n, err := ParseByteSize(v)
	if err != nil {
		return err
	}
	if n < MinMemory {
		return fmt.Errorf("must be at least %d bytes (4MiB)", MinMemory)
	}
	return nil
}

// Device types Moat implements.
const (
	DeviceDisk      = "disk"
	DeviceUnixChar  = "unix-char"
	DeviceUnixBlock = "unix-block"
)

var deviceSchemas = map[string]map[string]func(string) error{
	DeviceDisk: {
		"source":   nil,
		"path":     nil,
		"readonly": Bool,
		"pool":     Name,
		"required": Bool,
	},
	DeviceUnixChar:  unixDeviceKeys,
	DeviceUnixBlock: unixDeviceKeys,
}

// rootDiskIgnored are the disk keys that mean nothing for the root disk.
var rootDiskIgnored = []string{"readonly", "required"}

var unixDeviceKeys = map[string]func(string) error{
	"source":   AbsPath,
	"path":     AbsPath,
	"major":    Uint(1<<12 - 1),
	"minor":    Uint(1<<20 - 1),
	"mode":     octalMode,
	"uid":      Uint(idmap.MaxID),
	"gid":      Uint(idmap.MaxID),
	"required": Bool,
}

func octalMode(v string) error {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 {
		return errors.New("must be an octal permission mode such as 0660")
	}
	return nil
}

// CheckDevices validates every device of a (local or profile) device map,
// reporting the first problem in name order with device and key.
func CheckDevices(devices map[string]map[string]string) error {
	names := make([]string, 0, len(devices))
	for n := range devices {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := checkDevice(name, devices[name]); err != nil {
			return errdefs.Invalidf("Invalid device %q: %v", name, err)
		}
	}
	return nil
}

func checkDevice(name string, dev map[string]string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "/\x00") || hasControl(name) {
		return errors.New("bad device name")
	}
	typ := dev["type"]
	schema, ok := deviceSchemas[typ]
	if !ok {
		if typ == "nic" {
			return errors.New(`device type "nic" is not supported yet: containers get a loopback-only network`)
		}
		if typ == "" {
			return errors.New(`missing key "type"`)
		}
		return fmt.Errorf("unsupported device type %q (supported: disk, unix-char, unix-block)", typ)
	}
	keys := make([]string, 0, len(dev))
	for k := range dev {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "type" {
			continue
		}
		v := dev[k]
		validate, ok := schema[k]
		if !ok {
			// LXD operators set a disk's size out of habit: say why it is
			// refused rather than calling a well-known key unknown.
			if typ == DeviceDisk && (k == "size" || k == "size.state") {
				return fmt.Errorf("key %q is not supported: Moat sets no disk quotas (a disk is the pool's or the host's filesystem, without a size limit)", k)
			}
			return fmt.Errorf("unknown key %q for a %s device", k, typ)
		}
		if hasControl(v) {
			return fmt.Errorf("key %q: value contains control characters", k)
		}
		if validate != nil && v != "" {
			if err := validate(v); err != nil {
				return fmt.Errorf("key %q: invalid value %q: %v", k, v, err)
			}
		}
	}
	switch typ {
	case DeviceDisk:
		p := dev["path"]
		if p == "" {
			return errors.New(`key "path" is required for a disk device`)
		}
		if err := cleanAbs(p); err != nil {
			return fmt.Errorf("key %q: %v", "path", err)
		}
		if p == "/" {
			if dev["pool"] == "" {
				return errors.New(`the root disk (path "/") needs key "pool"`)
			}
			if dev["source"] != "" {
				return errors.New(`the root disk (path "/") takes no "source"`)
			}
			// The root disk is the instance's overlay on its pool: it is
			// always there and always writable, so these keys would be
			// stored and do nothing.
			for _, k := range rootDiskIgnored {
				if dev[k] != "" {
					return fmt.Errorf("key %q is not supported on the root disk (path \"/\")", k)
				}
			}
			return nil
		}
		if dev["pool"] != "" {
			return errors.New(`custom storage volumes are not supported: a disk other than the root disk needs a host path "source" and no "pool"`)
		}
		if dev["source"] == "" {
			return errors.New(`key "source" is required for a disk device other than the root disk`)
		}
		if err := cleanAbs(dev["source"]); err != nil {
			return fmt.Errorf("key %q: %v", "source", err)
		}
	case DeviceUnixChar, DeviceUnixBlock:
		if dev["path"] == "" && dev["source"] == "" {
			return errors.New(`key "path" or "source" is required`)
		}
		if (dev["major"] == "") != (dev["minor"] == "") {
			return errors.New(`keys "major" and "minor" go together`)
		}
		if dev["major"] == "" && dev["source"] == "" {
			return errors.New(`key "source" is required unless "major" and "minor" are given`)
		}
		for _, k := range []string{"path", "source"} {
			if dev[k] != "" {
				if err := cleanAbs(dev[k]); err != nil {
					return fmt.Errorf("key %q: %v", k, err)
				}
			}
		}
		if p := dev["path"]; p == "/" || dev["path"] == "" && dev["source"] == "/" {
			return errors.New("a device node cannot replace the container's root")
		}
	}
	return nil
}

func cleanAbs(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return errors.New("must be a clean absolute path")
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// CheckInstanceKeys validates a local (instance or profile) config map
// against the instance schema; environment.* values are free-form but
// must not carry control characters other than tab.
func CheckInstanceKeys(cfg map[string]string) error {
	if err := Instance.Check(cfg); err != nil {
		return err
	}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, "environment."); ok {
			if rest == "" || strings.ContainsAny(rest, "=\x00") || hasControl(rest) {
				return errdefs.Invalidf("Invalid instance configuration key %q: bad environment variable name", k)
			}
			if strings.ContainsRune(cfg[k], 0) {
				return errdefs.Invalidf("Invalid value for instance configuration key %q: contains a NUL byte", k)
			}
		}
	}
	return nil
}

// CheckExpanded validates an instance's expanded (profiles + local)
// config and devices as a whole: the rules that span keys. It is the one
// check every path that changes an instance's effective config runs.
func CheckExpanded(cfg map[string]string, devices map[string]map[string]string) error {
	if err := CheckInstanceKeys(cfg); err != nil {
		return err
	}
	if err := CheckDevices(devices); err != nil {
		return err
	}
	priv := IsTrue(cfg["security.privileged"])
	if priv && IsTrue(cfg["security.nesting"]) && !IsTrue(cfg[ForcePrivilegedNesting]) {
		return errdefs.Invalidf("security.privileged=true together with security.nesting=true gives root on the host: refused unless %s=true is set", ForcePrivilegedNesting)
	}
	if priv && cfg["raw.idmap"] != "" {
		return errdefs.Invalidf("raw.idmap cannot be used with security.privileged=true (privileged containers have no ID map)")
	}
	root := ""
	paths := map[string]string{}
	names := make([]string, 0, len(devices))
	for n := range devices {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := devices[n]
		p := d["path"]
		if d["type"] != DeviceDisk && p == "" {
			p = d["source"]
		}
		if other, dup := paths[p]; dup {
			return errdefs.Invalidf("Devices %q and %q both use path %q", other, n, p)
		}
		paths[p] = n
		if d["type"] == DeviceDisk && p == "/" {
			root = n
		}
	}
	if root == "" {
		return errdefs.Invalidf("No root disk device: add a disk device with path \"/\" and a pool, directly or through a profile")
	}
	return nil
}

// CheckRootPool refuses a root disk whose pool is not one of pools (the
// existing storage pools): the instance's storage would have nowhere to go.
func CheckRootPool(devices map[string]map[string]string, pools []string) error {
	for name, d := range devices {
		if d["type"] != DeviceDisk || d["path"] != "/" {
			continue
		}
		if !slices.Contains(pools, d["pool"]) {
			return errdefs.Invalidf("Invalid device %q: key \"pool\": storage pool %q does not exist", name, d["pool"])
		}
	}
	return nil
}
