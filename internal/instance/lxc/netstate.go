package lxcdriver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// NetInterface is one network interface of a running container, as seen
// from inside its network namespace.
type NetInterface struct {
	Hwaddr    string // "" when the device has no (or an all-zero) address, as lo
	HostName  string // the host-side peer of a veth; "" for anything else
	MTU       int
	Up        bool
	Type      string // LXD's names: loopback, point-to-point or broadcast
	Addresses []netip.Prefix
	Counters  NetCounters
}

// NetCounters are the device's 64-bit kernel statistics.
type NetCounters struct {
	BytesReceived, BytesSent     uint64
	PacketsReceived, PacketsSent uint64
	ErrorsReceived, ErrorsSent   uint64
	DroppedInbound               uint64
	DroppedOutbound              uint64
}

// The container's root owns its network namespace and may fill it with
// devices and addresses; past these bounds a State reports none rather
// than make every listing pay for them.
const (
	maxNetInterfaces = 256
	maxNetAddresses  = 1024
)

// nlaTypeMask drops the nested and byte-order flags from an attribute
// type (linux/netlink.h NLA_TYPE_MASK).
const nlaTypeMask = 1<<14 - 1

var errTooManyNet = errors.New("too many interfaces or addresses")

// netnsConn is a NETLINK_ROUTE socket that lives in a container's network
// namespace, opened once per run, so each State is two dumps on it: no
// fork, no setns, no round trip to the monitor.
type netnsConn struct {
	fd  int
	seq uint32
	buf []byte
	// hostNS is the daemon's network namespace, asked about through the
	// container's socket to recognise a veth whose peer is on the host.
	hostNS int
	// ioctl is a socket in the daemon's namespace, for the name of a
	// host-side peer from its index.
	ioctl int
	// hostNSID is the container namespace's id for hostNS, -1 until
	// known (the kernel assigns it when a link to it is first dumped).
	hostNSID int32
}

// dialNetns opens the socket inside the network namespace of the process
// behind pidfd. The thread that switches namespaces is locked for the
// duration and thrown away (its goroutine exits locked) if it cannot be
// switched back, so no other goroutine ever runs in the container's
// namespace.
func dialNetns(pidfd int) (*netnsConn, error) {
	type result struct {
		c   *netnsConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		host, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		ioctl, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			unix.Close(host)
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		if err := unix.Setns(pidfd, unix.CLONE_NEWNET); err != nil {
			unix.Close(host)
			unix.Close(ioctl)
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns to the container's network namespace: %w", err)}
			return
		}
		fd, serr := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if serr == nil {
			// A State holds the container's lock: never wait on the
			// kernel for long.
			serr = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
			if serr != nil {
				unix.Close(fd)
			}
		}
		if err := unix.Setns(host, unix.CLONE_NEWNET); err != nil {
			// Still locked: the runtime ends this thread with the goroutine.
			if serr == nil {
				unix.Close(fd)
			}
			unix.Close(host)
			unix.Close(ioctl)
			ch <- result{err: fmt.Errorf("setns back to the daemon's network namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		if serr != nil {
			unix.Close(host)
			unix.Close(ioctl)
			ch <- result{err: serr}
			return
		}
		ch <- result{c: &netnsConn{fd: fd, hostNS: host, ioctl: ioctl, hostNSID: -1, buf: make([]byte, 64<<10)}}
	}()
	r := <-ch
	return r.c, r.err
}

func (c *netnsConn) close() {
	unix.Close(c.fd)
	unix.Close(c.hostNS)
	unix.Close(c.ioctl)
}

// request sends one rtnetlink request of type typ with body and calls fn
// for each message of the answer until the dump (or the single answer)
// ends. Messages of an earlier, abandoned request are skipped by their
// sequence number.
func (c *netnsConn) request(typ uint16, flags uint16, body []byte, fn func(m syscall.NetlinkMessage) error) error {
	c.seq++
	req := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	req = append(req, body...)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], typ)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|flags)
	binary.NativeEndian.PutUint32(req[8:12], c.seq)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	for {
		n, _, rflags, _, err := unix.Recvmsg(c.fd, c.buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return errors.New("netlink answer truncated")
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return errors.New("short netlink error")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return syscall.Errno(-e)
				}
				return nil
			}
			if err := fn(m); err != nil {
				return err
			}
			if m.Header.Flags&unix.NLM_F_MULTI == 0 {
				return nil
			}
		}
	}
}

// rtattrs calls fn for each attribute in b (nested flags masked off).
func rtattrs(b []byte, fn func(typ uint16, v []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[unix.SizeofRtAttr:l])
		al := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if al > len(b) {
			return
		}
		b = b[al:]
	}
}

// vethPeer is what a link dump says of a veth's peer.
type vethPeer struct {
	index int32
	nsid  int32 // -1: the peer is in the container's own namespace
}

// interfaces dumps the links and addresses of the container's namespace.
func (c *netnsConn) interfaces() (map[string]NetInterface, error) {
	out := map[string]NetInterface{}
	names := map[int32]string{}
	peers := map[string]vethPeer{}
	ifi := make([]byte, unix.SizeofIfInfomsg)
	err := c.request(unix.RTM_GETLINK, unix.NLM_F_DUMP, ifi, func(m syscall.NetlinkMessage) error {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			return nil
		}
		if len(out) == maxNetInterfaces {
			return errTooManyNet
		}
		index := int32(binary.NativeEndian.Uint32(m.Data[4:8]))
		flags := binary.NativeEndian.Uint32(m.Data[8:12])
		in := NetInterface{Up: flags&unix.IFF_UP != 0, Type: "broadcast"}
		switch {
		case flags&unix.IFF_LOOPBACK != 0:
			in.Type = "loopback"
		case flags&unix.IFF_POINTOPOINT != 0:
			in.Type = "point-to-point"
		}
		var name, kind string
		peer := vethPeer{nsid: -1}
		rtattrs(m.Data[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.IFLA_IFNAME:
				name = string(bytes.TrimRight(v, "\x00"))
			case unix.IFLA_MTU:
				if len(v) >= 4 {
					in.MTU = int(binary.NativeEndian.Uint32(v))
				}
			case unix.IFLA_ADDRESS:
				if bytes.Count(v, []byte{0}) != len(v) {
					in.Hwaddr = net.HardwareAddr(v).String()
				}
			case unix.IFLA_STATS64:
				in.Counters = stats64(v)
			case unix.IFLA_LINK:
				if len(v) >= 4 {
					peer.index = int32(binary.NativeEndian.Uint32(v))
				}
			case unix.IFLA_LINK_NETNSID:
				if len(v) >= 4 {
					peer.nsid = int32(binary.NativeEndian.Uint32(v))
				}
			case unix.IFLA_LINKINFO:
				rtattrs(v, func(typ uint16, v []byte) {
					if typ == unix.IFLA_INFO_KIND {
						kind = string(bytes.TrimRight(v, "\x00"))
					}
				})
			}
		})
		if name == "" {
			return nil
		}
		names[index] = name
		out[name] = in
		if kind == "veth" && peer.nsid >= 0 && peer.index > 0 {
			peers[name] = peer
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	addrs := 0
	ifa := make([]byte, unix.SizeofIfAddrmsg)
	err = c.request(unix.RTM_GETADDR, unix.NLM_F_DUMP, ifa, func(m syscall.NetlinkMessage) error {
		if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg {
			return nil
		}
		if addrs == maxNetAddresses {
			return errTooManyNet
		}
		family, plen := m.Data[0], int(m.Data[1])
		index := int32(binary.NativeEndian.Uint32(m.Data[4:8]))
		// IFA_LOCAL is the address of an IPv4 point-to-point device
		// (IFA_ADDRESS its peer's); elsewhere only IFA_ADDRESS is set.
		var addr, local []byte
		rtattrs(m.Data[unix.SizeofIfAddrmsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.IFA_ADDRESS:
				addr = v
			case unix.IFA_LOCAL:
				local = v
			}
		})
		if local != nil {
			addr = local
		}
		ip, ok := netip.AddrFromSlice(addr)
		name, known := names[index]
		if !ok || !known || (family == unix.AF_INET) != ip.Is4() {
			return nil
		}
		// The prefix keeps the address itself, not the network's.
		p := netip.PrefixFrom(ip, plen)
		if !p.IsValid() {
			return nil
		}
		in := out[name]
		in.Addresses = append(in.Addresses, p)
		out[name] = in
		addrs++
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name, p := range peers {
		if h := c.hostPeer(p); h != "" {
			in := out[name]
			in.HostName = h
			out[name] = in
		}
	}
	return out, nil
}

// hostPeer names a veth's peer when it is in the daemon's namespace.
func (c *netnsConn) hostPeer(p vethPeer) string {
	if c.hostNSID < 0 {
		c.hostNSID = c.hostNetnsID()
		if c.hostNSID < 0 {
			return ""
		}
	}
	if p.nsid != c.hostNSID {
		return ""
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return ""
	}
	ifr.SetUint32(uint32(p.index))
	if err := unix.IoctlIfreq(c.ioctl, unix.SIOCGIFNAME, ifr); err != nil {
		return ""
	}
	return ifr.Name()
}

// hostNetnsID asks the container's namespace for its id of the daemon's
// (RTM_GETNSID with the namespace's fd); -1 if it has none.
func (c *netnsConn) hostNetnsID() int32 {
	body := make([]byte, 4, 4+8) // rtgenmsg, padded
	body[0] = unix.AF_UNSPEC
	attr := make([]byte, 8)
	binary.NativeEndian.PutUint16(attr[0:2], 8)
	binary.NativeEndian.PutUint16(attr[2:4], unix.NETNSA_FD)
	binary.NativeEndian.PutUint32(attr[4:8], uint32(c.hostNS))
	body = append(body, attr...)
	id := int32(-1)
	err := c.request(unix.RTM_GETNSID, 0, body, func(m syscall.NetlinkMessage) error {
		if m.Header.Type != unix.RTM_NEWNSID || len(m.Data) < 4 {
			return nil
		}
		rtattrs(m.Data[4:], func(typ uint16, v []byte) {
			if typ == unix.NETNSA_NSID && len(v) >= 4 {
				id = int32(binary.NativeEndian.Uint32(v))
			}
		})
		return nil
	})
	if err != nil {
		return -1
	}
	return id
}

// stats64 reads the leading fields of struct rtnl_link_stats64.
func stats64(v []byte) NetCounters {
	f := func(i int) uint64 {
		if len(v) < (i+1)*8 {
			return 0
		}
		return binary.NativeEndian.Uint64(v[i*8:])
	}
	return NetCounters{
		PacketsReceived: f(0), PacketsSent: f(1),
		BytesReceived: f(2), BytesSent: f(3),
		ErrorsReceived: f(4), ErrorsSent: f(5),
		DroppedInbound: f(6), DroppedOutbound: f(7),
	}
}
