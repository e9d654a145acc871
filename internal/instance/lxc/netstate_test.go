package lxcdriver

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostCmd runs a host command the test needs (ip, nsenter) and fails the
// test with its output if it fails.
func hostCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// threadsInOwnNetns fails the test if any thread of this process is in
// another network namespace than the process: the State that opened the
// container's socket must leave none behind.
func threadsInOwnNetns(t *testing.T) {
	t.Helper()
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, p := range tasks {
		if ns, err := os.Readlink(p); err == nil && ns != self {
			t.Errorf("thread %s is in %s, the process in %s", p, ns, self)
		}
	}
}

// TestStateNetworkLoopback: State reports the container's lo as LXD does,
// its counters move with traffic inside, and the socket it reads them
// through is closed by a stop.
func TestStateNetworkLoopback(t *testing.T) {
	c := startTest(t, testSpec(t))
	s, err := c.State()
	if err != nil || s.Status != StatusRunning {
		t.Fatalf("state %+v %v", s, err)
	}
	threadsInOwnNetns(t)
	lo, ok := s.Network["lo"]
	if !ok || len(s.Network) != 1 {
		t.Fatalf("network %+v, want just lo", s.Network)
	}
	if !lo.Up || lo.Type != "loopback" || lo.MTU != 65536 || lo.Hwaddr != "" || lo.HostName != "" {
		t.Fatalf("lo %+v", lo)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}
	inet6, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/if_inet6", s.PID))
	if err == nil && strings.Contains(string(inet6), "00000000000000000000000000000001") {
		want = append(want, netip.MustParsePrefix("::1/128"))
	}
	t.Logf("lo: %+v", lo)
	if !slices.Equal(lo.Addresses, want) {
		t.Fatalf("lo addresses %v, want %v", lo.Addresses, want)
	}

	if code, out, errOut := run(t, c, "ping", "-c1", "-W2", "127.0.0.1"); code != 0 {
		t.Fatalf("ping in the container: %d %s %s", code, out, errOut)
	}
	s, err = c.State()
	if err != nil {
		t.Fatal(err)
	}
	after := s.Network["lo"].Counters
	if after.PacketsSent < lo.Counters.PacketsSent+2 || after.PacketsReceived < lo.Counters.PacketsReceived+2 ||
		after.BytesSent <= lo.Counters.BytesSent || after.BytesReceived <= lo.Counters.BytesReceived {
		t.Fatalf("counters %+v after a ping, %+v before", after, lo.Counters)
	}

	if s.MemoryUsage <= 0 || s.MemoryPeak < s.MemoryUsage {
		t.Errorf("memory usage %d, peak %d", s.MemoryUsage, s.MemoryPeak)
	}
	if v, _ := c.cg.version("memory"); v == 1 && fileExists("/sys/fs/cgroup/memory/memory.memsw.usage_in_bytes") && (s.SwapUsage < 0 || s.SwapPeak < 0) {
		t.Errorf("swap %d, peak %d with swap accounting on", s.SwapUsage, s.SwapPeak)
	}

	sock := fmt.Sprintf("/proc/self/fd/%d", c.live.net.fd)
	target, err := os.Readlink(sock)
	if err != nil || !strings.HasPrefix(target, "socket:") {
		t.Fatalf("netlink fd %s is %q, %v", sock, target, err)
	}
	if err := c.Stop(true, 0); err != nil {
		t.Fatal(err)
	}
	if now, err := os.Readlink(sock); err == nil && now == target {
		t.Errorf("netlink socket %s still open after the stop", target)
	}
	if s, _ := c.State(); s.Network != nil {
		t.Errorf("stopped container reports network %+v", s.Network)
	}
}

// TestStateNetworkVeth: a veth moved into a running container (after
// State opened its socket) is reported with its MAC, address and the name
// of its host-side peer.
func TestStateNetworkVeth(t *testing.T) {
	c := startTest(t, testSpec(t))
	s, err := c.State()
	if err != nil || s.Status != StatusRunning {
		t.Fatalf("state %+v %v", s, err)
	}
	n := seq.Add(1)
	host, inside := fmt.Sprintf("mt%dh%d", os.Getpid()%10000000, n), fmt.Sprintf("mt%dc%d", os.Getpid()%10000000, n)
	hostCmd(t, "ip", "link", "add", host, "type", "veth", "peer", "name", inside)
	t.Cleanup(func() {
		// Deleting either end deletes the pair; the container's end is
		// gone with its namespace if the host end already is.
		if out, err := exec.Command("ip", "link", "del", host).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
			t.Errorf("ip link del %s: %v %s", host, err, out)
		}
	})
	mac := hostCmd(t, "cat", "/sys/class/net/"+inside+"/address")
	hostCmd(t, "ip", "link", "set", inside, "netns", fmt.Sprint(s.PID))
	netns := fmt.Sprintf("--net=/proc/%d/ns/net", s.PID)
	hostCmd(t, "nsenter", netns, "ip", "addr", "add", "192.0.2.10/24", "dev", inside)
	hostCmd(t, "nsenter", netns, "ip", "link", "set", inside, "up")

	s, err = c.State()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := s.Network[inside]
	if !ok || len(s.Network) != 2 {
		t.Fatalf("network %+v, want lo and %s", s.Network, inside)
	}
	if v.Hwaddr != mac || v.HostName != host || v.Type != "broadcast" || v.MTU != 1500 || !v.Up {
		t.Errorf("%s: %+v, want hwaddr %s, host name %s, broadcast, mtu 1500, up", inside, v, mac, host)
	}
	if !slices.Contains(v.Addresses, netip.MustParsePrefix("192.0.2.10/24")) {
		t.Errorf("%s addresses %v, want 192.0.2.10/24", inside, v.Addresses)
	}
	if s.Network["lo"].HostName != "" {
		t.Errorf("lo host name %q", s.Network["lo"].HostName)
	}

	// A veth whose peer is in the container too has no host name.
	hostCmd(t, "nsenter", netns, "ip", "link", "add", "in0", "type", "veth", "peer", "name", "in1")
	s, _ = c.State()
	if in0, ok := s.Network["in0"]; !ok || in0.HostName != "" || in0.Up {
		t.Errorf("in0 %+v (present %v), want down and no host name", in0, ok)
	}
	threadsInOwnNetns(t)
}

// TestStateNetworkBounded: a container that fills its namespace with more
// addresses than State reports shows no interfaces rather than making
// every State read them all, and shows them again once they are gone.
func TestStateNetworkBounded(t *testing.T) {
	c := startTest(t, testSpec(t))
	s, err := c.State()
	if err != nil || s.Network["lo"].MTU != 65536 {
		t.Fatalf("state %+v %v", s, err)
	}
	var batch strings.Builder
	for i := 0; i <= maxNetAddresses; i++ {
		fmt.Fprintf(&batch, "addr add 10.77.%d.%d/32 dev lo\n", i/250, i%250+1)
	}
	cmd := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", s.PID), "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("adding addresses: %v %s", err, out)
	}
	s, err = c.State()
	if err != nil || s.Status != StatusRunning || s.Network != nil || s.MemoryUsage <= 0 {
		t.Fatalf("state with %d addresses: %+v %v", maxNetAddresses+1, s, err)
	}
	hostCmd(t, "nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", s.PID), "ip", "addr", "flush", "dev", "lo", "to", "10.77.0.0/16")
	s, _ = c.State()
	if lo := s.Network["lo"]; !slices.Contains(lo.Addresses, netip.MustParsePrefix("127.0.0.1/8")) || len(lo.Addresses) > 2 {
		t.Fatalf("lo after the flush: %+v", lo)
	}
	threadsInOwnNetns(t)
}

// BenchmarkState is one State of a running container from the run cache,
// and the part of it that reads the network namespace.
func BenchmarkState(b *testing.B) {
	c := startTest(b, testSpec(b))
	if s, err := c.State(); err != nil || s.Network["lo"].MTU == 0 {
		b.Fatalf("state %+v %v", s, err)
	}
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.State(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("network", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.live.net.interfaces(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
