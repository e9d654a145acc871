package daemon

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/idmap"
	"github.com/moat/moat/internal/route"
)

// fileRequest is a files API request with ?path=p and the given headers.
func fileRequest(p string, headers map[string]string) *route.Request {
	r := httptest.NewRequest("POST", "/1.0/instances/c1/files?"+url.Values{"path": {p}}.Encode(), nil)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return &route.Request{HTTP: r}
}

// fuzzIDMap is an isolated map with a raw.idmap hole: container id 1000
// is host id 1000, the others are shifted.
var fuzzIDMap = idmap.Set{
	{Isuid: true, Hostid: 1000000, Nsid: 0, Maprange: 1000},
	{Isuid: true, Hostid: 1000, Nsid: 1000, Maprange: 1},
	{Isuid: true, Hostid: 1001001, Nsid: 1001, Maprange: 64535},
	{Isgid: true, Hostid: 1000000, Nsid: 0, Maprange: 1000},
	{Isgid: true, Hostid: 1000, Nsid: 1000, Maprange: 1},
	{Isgid: true, Hostid: 1001001, Nsid: 1001, Maprange: 64535},
}

// FuzzFileRequest: ?path= becomes a clean absolute path (taking the
// result back gives itself) or a 400; X-LXD-uid and X-LXD-gid give an id
// no larger than idmap.MaxID that its decimal form gives back, or a 400
// naming the header and the value; an id the instance's map covers
// translates to a host id that translates back to it, and one it does
// not cover is a 400 naming the header. (X-LXD-mode, -type and -write
// are checked inline in postInstanceFile, which needs a running daemon;
// the integration files tests cover them.)
func FuzzFileRequest(f *testing.F) {
	for _, s := range [][3]string{
		{"/etc/hostname", "0", "0"}, {"etc/../../../x", "1000", "1000"}, {"/a//b/./c/", "-1", ""},
		{"", "65535", "65536"}, {"/x\x00y", "4294967294", "4294967295"}, {"/", "+1", "1.0"},
		{"..", "007", " 1"}, {"/%2e%2e/x", "18446744073709551616", "-2"}, {"//", "1001", "66535"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, p, uid, gid string) {
		r := fileRequest(p, map[string]string{"X-LXD-uid": uid, "X-LXD-gid": gid})
		got, err := filePath(r)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("path %q: %v is not a 400", p, err)
			}
		} else {
			if !strings.HasPrefix(got, "/") || path.Clean(got) != got || strings.ContainsRune(got, 0) {
				t.Fatalf("path %q became %q", p, got)
			}
			if again, err := filePath(fileRequest(got, nil)); err != nil || again != got {
				t.Fatalf("path %q became %q, which becomes %q, %v", p, got, again, err)
			}
		}
		for _, h := range []struct {
			name, value string
			uid         bool
		}{{"X-LXD-uid", uid, true}, {"X-LXD-gid", gid, false}} {
			id, err := headerID(r, h.name, 7)
			if err != nil {
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), h.name) || !strings.Contains(err.Error(), strconv.Quote(h.value)) {
					t.Fatalf("%s %q: %v", h.name, h.value, err)
				}
				continue
			}
			if h.value == "" || h.value == "-1" {
				if id != 7 {
					t.Fatalf("%s %q = %d, not the default", h.name, h.value, id)
				}
				continue
			}
			if id < 0 || id > idmap.MaxID {
				t.Fatalf("%s %q = %d", h.name, h.value, id)
			}
			back := fileRequest("/", map[string]string{h.name: strconv.Itoa(id)})
			if again, err := headerID(back, h.name, 7); err != nil || again != id {
				t.Fatalf("%s %q = %d, whose decimal form gives %d, %v", h.name, h.value, id, again, err)
			}
			host, err := hostID(fuzzIDMap, h.uid, id)
			if err != nil {
				if id < 65536 || !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), h.name) {
					t.Fatalf("%s %d: %v", h.name, id, err)
				}
				continue
			}
			if host < 0 || host > idmap.MaxID || containerID(fuzzIDMap, h.uid, uint32(host)) != uint64(id) {
				t.Fatalf("%s %d -> host %d -> %d", h.name, id, host, containerID(fuzzIDMap, h.uid, uint32(host)))
			}
		}
	})
}
