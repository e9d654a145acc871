package integration

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// listNames lists a collection with ?filter= at every recursion and
// checks the three agree; it returns the names (instances) or
// fingerprints (images) found, sorted.
func listNames(t *testing.T, d *testdaemon.Daemon, collection, filter string) []string {
	t.Helper()
	var per [3][]string
	for rec := 0; rec <= 2; rec++ {
		res := d.Do("GET", "/1.0/"+collection+"?recursion="+string(rune('0'+rec))+"&filter="+url.QueryEscape(filter), nil)
		if res.Status != 200 {
			t.Fatalf("%s filter %q recursion %d: %d %s", collection, filter, rec, res.Status, res.Body.Error)
		}
		var names []string
		if rec == 0 {
			var urls []string
			res.Metadata(t, &urls)
			for _, u := range urls {
				p, _ := url.Parse(u)
				names = append(names, p.Path[strings.LastIndexByte(p.Path, '/')+1:])
			}
		} else {
			var objs []map[string]any
			res.Metadata(t, &objs)
			for _, o := range objs {
				if n, ok := o["name"].(string); ok && collection == "instances" {
					names = append(names, n)
				} else if fp, ok := o["fingerprint"].(string); ok {
					names = append(names, fp)
				}
			}
		}
		slices.Sort(names)
		per[rec] = names
	}
	if !slices.Equal(per[0], per[1]) || !slices.Equal(per[1], per[2]) {
		t.Fatalf("%s filter %q differs by recursion: %v %v %v", collection, filter, per[0], per[1], per[2])
	}
	return per[0]
}

func TestInstanceListFilter(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "f1", map[string]string{"user.tag": "red"})
	mustSucceed(t, d, d.Do("POST", "/1.0/instances", map[string]any{
		"name": "f2", "source": map[string]string{"type": "image", "alias": "bb"},
		"config": map[string]string{"user.tag": "blue two"},
	}))
	both := []string{"f1", "f2"}
	cases := map[string][]string{
		"":                      both,
		"name eq f1":            {"f1"},
		"name ne f1":            {"f2"},
		"status eq running":     {"f1"}, // as lxc sends "lxc list status=running"
		"not status eq Running": {"f2"},
		"name eq f1 or config.user.tag eq 'blue two'":    both,
		`config.user.tag eq "blue two"`:                  {"f2"},
		"config.user.tag eq blue":                        nil,
		"expanded_devices.root.type eq disk":             both,
		"state.status eq Running":                        {"f1"}, // the full object, whatever the recursion
		"name eq f. and not config.user.tag eq red":      {"f2"},
		"name eq f2 or name eq f1 and status eq Stopped": {"f2"}, // left to right: (f2 or f1) and stopped
		"config.no.such.key eq ''":                       both,
	}
	for filter, want := range cases {
		if got := listNames(t, d, "instances", filter); !slices.Equal(got, want) {
			t.Errorf("filter %q: %v, want %v", filter, got, want)
		}
	}

	// A bad filter is a 400 naming the problem, for every recursion, and
	// changes nothing.
	for _, bad := range []string{"name gt f1", "name eq 'f1", "name eq f1 and", "name", "config eq red", "name eq f1 f2"} {
		for _, rec := range []string{"0", "1", "2"} {
			res := d.Do("GET", "/1.0/instances?recursion="+rec+"&filter="+url.QueryEscape(bad), nil)
			if res.Status != 400 || !strings.HasPrefix(res.Body.Error, "invalid filter: ") {
				t.Errorf("filter %q recursion %s: %d %q, want 400 invalid filter", bad, rec, res.Status, res.Body.Error)
			}
		}
	}
	var all []api.Instance
	d.Do("GET", "/1.0/instances?recursion=1", nil).Metadata(t, &all)
	if len(all) != 2 || all[0].Status == all[1].Status {
		t.Fatalf("after bad filters: %+v", all)
	}

	// fields=: an empty list leaves out the expensive state; named fields
	// are there; an unknown one is a 400.
	state := func(query string) map[string]json.RawMessage {
		t.Helper()
		var full []struct {
			Name  string                     `json:"name"`
			State map[string]json.RawMessage `json:"state"`
		}
		res := d.Do("GET", "/1.0/instances?"+query+"&filter=name+eq+f1", nil)
		if res.Status != 200 {
			t.Fatalf("%s: %d %s", query, res.Status, res.Body.Error)
		}
		res.Metadata(t, &full)
		if len(full) != 1 || full[0].State == nil {
			t.Fatalf("%s: %+v", query, full)
		}
		return full[0].State
	}
	// The running container's network is its namespace's interfaces:
	// only lo, which liblxc brings up.
	loopback := func(query string, raw json.RawMessage) {
		t.Helper()
		var network map[string]api.InstanceStateNetwork
		if err := json.Unmarshal(raw, &network); err != nil {
			t.Fatalf("%s: network %s: %v", query, raw, err)
		}
		lo, ok := network["lo"]
		if !ok || len(network) != 1 || lo.State != "up" || lo.Type != "loopback" || lo.Mtu != 65536 || lo.Hwaddr != "" || lo.HostName != "" {
			t.Fatalf("%s: network %s, want lo up, loopback, mtu 65536", query, raw)
		}
		if !slices.Contains(lo.Addresses, api.InstanceStateNetworkAddress{Family: "inet", Address: "127.0.0.1", Netmask: "8", Scope: "local"}) {
			t.Errorf("%s: lo addresses %+v, want 127.0.0.1/8 scope local", query, lo.Addresses)
		}
		for _, k := range []string{"bytes_received", "bytes_sent", "packets_received", "packets_sent", "errors_received", "errors_sent", "packets_dropped_outbound", "packets_dropped_inbound"} {
			if _, ok := lo.Counters[k]; !ok {
				t.Errorf("%s: lo counters %v lack %s", query, lo.Counters, k)
			}
		}
	}
	if s := state("recursion=2"); string(s["disk"]) != "{}" || string(s["status"]) != `"Running"` {
		t.Errorf("recursion=2: disk %s status %s", s["disk"], s["status"])
	} else {
		loopback("recursion=2", s["network"])
	}
	if s := state("recursion=" + url.QueryEscape("2;fields=")); string(s["disk"]) != "null" || string(s["network"]) != "null" || string(s["status"]) != `"Running"` {
		t.Errorf("recursion=2;fields=: disk %s network %s status %s", s["disk"], s["network"], s["status"])
	}
	if s := state("recursion=" + url.QueryEscape("2;fields=state.disk")); string(s["disk"]) != "{}" || string(s["network"]) != "null" {
		t.Errorf("fields=state.disk: disk %s network %s", s["disk"], s["network"])
	}
	if s := state("recursion=2&fields=state.network"); string(s["disk"]) != "null" {
		t.Errorf("&fields=state.network: disk %s", s["disk"])
	} else {
		loopback("&fields=state.network", s["network"])
	}
	for _, q := range []string{"recursion=2%3Bfields%3Dstate.bogus", "recursion=2%3Bbogus%3D1", "recursion=2%3Bfields%3Dstate.disk&fields=state.disk", "recursion=2&fields=state.bogus"} {
		if res := d.Do("GET", "/1.0/instances?"+q, nil); res.Status != 400 {
			t.Errorf("%s: %d %q, want 400", q, res.Status, res.Body.Error)
		}
	}
}

func TestImageListFilter(t *testing.T) {
	d, fp := withImage(t)
	path, _ := testdaemon.BusyboxImage(t)
	meta, rootfs := splitImage(t, path, "splitbox")
	op := mustSucceed(t, d, uploadSplit(t, d, []part{{"metadata", "meta.tar.gz", meta}, {"rootfs", "rootfs.tar.gz", rootfs}}))
	split := op.Metadata["fingerprint"].(string)
	both := []string{fp, split}
	slices.Sort(both)
	cases := map[string][]string{
		"":                             both,
		"properties.os eq BusyBox":     {fp},
		"not properties.os eq busybox": {split},
		"properties.os eq busybox or properties.os eq splitbox": both,
		"fingerprint eq " + split:                               {split},
		"public eq true":                                        nil,
		"public eq false and properties.os eq splitbox":         {split},
	}
	for filter, want := range cases {
		if got := listNames(t, d, "images", filter); !slices.Equal(got, want) {
			t.Errorf("filter %q: %v, want %v", filter, got, want)
		}
	}
	for _, bad := range []string{"properties.os like busy", "properties.os eq \"busybox", "aliases eq bb", "not"} {
		res := d.Do("GET", "/1.0/images?recursion=1&filter="+url.QueryEscape(bad), nil)
		if res.Status != 400 || !strings.HasPrefix(res.Body.Error, "invalid filter: ") {
			t.Errorf("filter %q: %d %q, want 400 invalid filter", bad, res.Status, res.Body.Error)
		}
	}
	var list []string
	d.Do("GET", "/1.0/images", nil).Metadata(t, &list)
	if len(list) != 2 {
		t.Fatalf("images after bad filters: %v", list)
	}
}
