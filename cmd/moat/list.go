package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

func (a *app) listCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "list [remote:] [FILTER...]", Aliases: []string{"ls"}, Short: "List instances",
		Long: "List instances. A FILTER is a name prefix, or key=value matched against the instance's\n" +
			"expanded config (status=running matches the state).",
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, filters, err := a.remoteArg(args)
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			all, err := c.GetInstances(cmd.Context())
			if err != nil {
				return err
			}
			insts := []api.InstanceFull{} // json shows [], not null
			for _, in := range all {
				if matchInstance(in, filters) {
					insts = append(insts, in)
				}
			}
			slices.SortFunc(insts, func(x, y api.InstanceFull) int { return strings.Compare(x.Name, y.Name) })
			l := list{header: []string{"NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"}, data: insts}
			for _, in := range insts {
				typ := strings.ToUpper(in.Type)
				if typ == "" {
					typ = "CONTAINER"
				}
				if in.Ephemeral {
					typ += " (EPHEMERAL)"
				}
				l.rows = append(l.rows, []string{in.Name, strings.ToUpper(in.Status),
					addresses(in.State, "inet"), addresses(in.State, "inet6"), typ, fmt.Sprint(len(in.Snapshots))})
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func matchInstance(in api.InstanceFull, filters []string) bool {
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			if !strings.HasPrefix(in.Name, f) {
				return false
			}
		case k == "status" || k == "state":
			if !strings.EqualFold(in.Status, v) {
				return false
			}
		case in.ExpandedConfig[k] != v:
			return false
		}
	}
	return true
}

// addresses lists the global addresses of a family, one per line, as
// "ADDR (iface)".
func addresses(st *api.InstanceState, family string) string {
	if st == nil {
		return ""
	}
	var out []string
	for _, dev := range slices.Sorted(mapKeys(st.Network)) {
		if dev == "lo" {
			continue
		}
		for _, addr := range st.Network[dev].Addresses {
			if addr.Family == family && addr.Scope == "global" {
				out = append(out, fmt.Sprintf("%s (%s)", addr.Address, dev))
			}
		}
	}
	return strings.Join(out, "\n")
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// printInstanceInfo is `info NAME`.
func (a *app) printInstanceInfo(c *client.Client, in *api.InstanceFull) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("Name: %s", in.Name)
	p("Status: %s", strings.ToUpper(in.Status))
	typ := in.Type
	if in.Ephemeral {
		typ += " (ephemeral)"
	}
	p("Type: %s", typ)
	p("Architecture: %s", in.Architecture)
	if in.Description != "" {
		p("Description: %s", in.Description)
	}
	st := in.State
	if st != nil && st.Pid > 0 {
		p("PID: %d", st.Pid)
	}
	if !in.CreatedAt.IsZero() {
		p("Created: %s", in.CreatedAt.UTC().Format("2006/01/02 15:04 MST"))
	}
	if !in.LastUsedAt.IsZero() && in.LastUsedAt.Year() > 1970 {
		p("Last Used: %s", in.LastUsedAt.UTC().Format("2006/01/02 15:04 MST"))
	}
	if st != nil && strings.EqualFold(st.Status, "Running") || st != nil && strings.EqualFold(st.Status, "Frozen") {
		p("")
		p("Resources:")
		p("  Processes: %d", st.Processes)
		if len(st.Disk) > 0 {
			p("  Disk usage:")
			for _, dev := range slices.Sorted(mapKeys(st.Disk)) {
				p("    %s: %s", dev, humanBytes(st.Disk[dev].Usage))
			}
		}
		p("  CPU usage:")
		p("    CPU usage (in seconds): %d", time.Duration(st.CPU.Usage)/time.Second)
		p("  Memory usage:")
		p("    Memory (current): %s", humanBytes(st.Memory.Usage))
		if st.Memory.UsagePeak > 0 {
			p("    Memory (peak): %s", humanBytes(st.Memory.UsagePeak))
		}
		if st.Memory.SwapUsage > 0 {
			p("    Swap (current): %s", humanBytes(st.Memory.SwapUsage))
		}
		if len(st.Network) > 0 {
			p("  Network usage:")
			for _, dev := range slices.Sorted(mapKeys(st.Network)) {
				n := st.Network[dev]
				p("    %s:", dev)
				p("      Type: %s", n.Type)
				p("      State: %s", strings.ToUpper(n.State))
				if n.HostName != "" {
					p("      Host interface: %s", n.HostName)
				}
				if n.Hwaddr != "" {
					p("      MAC address: %s", n.Hwaddr)
				}
				if n.Mtu > 0 {
					p("      MTU: %d", n.Mtu)
				}
				p("      Bytes received: %s", humanBytes(n.Counters["bytes_received"]))
				p("      Bytes sent: %s", humanBytes(n.Counters["bytes_sent"]))
				if len(n.Addresses) > 0 {
					p("      IP addresses:")
					for _, ad := range n.Addresses {
						p("        %s:  %s/%s (%s)", ad.Family, ad.Address, ad.Netmask, ad.Scope)
					}
				}
			}
		}
	}
	_, err := fmt.Fprint(a.stdout, b.String())
	return err
}

// humanBytes renders a byte count with binary units, as lxc does.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n)
	i := -1
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.2f%s", v, units[i])
}
