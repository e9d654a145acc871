package daemon

import (
	"bufio"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moat/moat/api"
)

// environment is what GET /1.0 reports about the host; it is read once at
// start because none of it changes while the daemon runs.
type environment struct {
	hostname, kernel, kernelVersion, arch, osName, osVersion string
}

func probeEnvironment() environment {
	e := environment{kernel: "Linux", arch: runtime.GOARCH}
	e.hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e.kernel = unix.ByteSliceToString(u.Sysname[:])
		e.kernelVersion = unix.ByteSliceToString(u.Release[:])
		e.arch = unix.ByteSliceToString(u.Machine[:])
	}
	if f, err := os.Open("/etc/os-release"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "=")
			if !ok {
				continue
			}
			v = strings.Trim(v, `"`)
			switch k {
			case "NAME":
				e.osName = v
			case "VERSION_ID":
				e.osVersion = v
			}
		}
	}
	return e
}

func (e environment) architectures() []string {
	if e.arch == "x86_64" {
		return []string{"x86_64", "i686"}
	}
	return []string{e.arch}
}

func (d *Daemon) apiEnvironment(project string) api.ServerEnvironment {
	e := d.env
	return api.ServerEnvironment{
		Addresses:          []string{},
		Architectures:      e.architectures(),
		Driver:             "lxc",
		Firewall:           "nftables",
		Kernel:             e.kernel,
		KernelArchitecture: e.arch,
		KernelFeatures:     map[string]string{},
		KernelVersion:      e.kernelVersion,
		LXCFeatures:        map[string]string{},
		OSName:             e.osName,
		OSVersion:          e.osVersion,
		Project:            project,
		Server:             "moat",
		ServerEventMode:    "full-mesh",
		ServerName:         e.hostname,
		ServerPid:          os.Getpid(),
		ServerVersion:      Version,
		Storage:            "dir",
		StorageVersion:     "1",
		StorageSupportedDrivers: []api.StorageDriverInfo{
			{Name: "dir", Version: "1"},
		},
	}
}
