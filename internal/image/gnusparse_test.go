package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/moat/moat/internal/testdaemon"
)

// gnuSparseTar is metadata.yaml then rootfs/big as an old-style GNU
// sparse file (typeflag 'S', the map in the header): 1 stored byte at the
// end of realsize bytes of holes. archive/tar writes no such entry, so its
// header block is made here.
func gnuSparseTar(tb testing.TB, realsize int64) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	h := reg("metadata.yaml", metaYAML, 0o644).Header
	h.Size = int64(len(metaYAML))
	if err := tw.WriteHeader(&h); err != nil {
		tb.Fatal(err)
	}
	tw.Write([]byte(metaYAML))
	if err := tw.Flush(); err != nil {
		tb.Fatal(err)
	}
	blk := make([]byte, 512)
	field := func(off, n int, v string) { copy(blk[off:off+n], v) }
	octal := func(off, n int, v int64) { field(off, n, fmt.Sprintf("%0*o", n-1, v)) }
	field(0, 100, "rootfs/big")
	octal(100, 8, 0o644)
	octal(108, 8, 0)
	octal(116, 8, 0)
	octal(124, 12, 1) // stored bytes
	octal(136, 12, 0)
	blk[156] = tar.TypeGNUSparse
	field(257, 8, "ustar  \x00")
	octal(386, 12, realsize-1) // the one data block: offset, length
	octal(398, 12, 1)
	octal(483, 12, realsize)
	field(148, 8, "        ")
	var sum int64
	for _, b := range blk {
		sum += int64(b)
	}
	field(148, 8, fmt.Sprintf("%06o\x00 ", sum))
	buf.Write(blk)
	data := make([]byte, 512)
	data[0] = 'x'
	buf.Write(data)
	buf.Write(make([]byte, 1024))
	return buf.Bytes()
}

// TestGNUSparseFileRefused: the old GNU sparse form is refused like the
// PAX one (it was skipped without a word), and leaves nothing behind.
func TestGNUSparseFileRefused(t *testing.T) {
	testdaemon.RequireRoot(t)
	upload := gnuSparseTar(t, 64<<20)
	// archive/tar reads it as a sparse entry: the test makes what it means.
	tr := tar.NewReader(bytes.NewReader(upload))
	tr.Next()
	if hdr, err := tr.Next(); err != nil || hdr.Typeflag != tar.TypeGNUSparse || hdr.Name != "rootfs/big" {
		t.Fatalf("the hand-made entry reads as %+v, %v", hdr, err)
	}
	parent, s, v := fuzzStore(t)
	imp, err := s.ImportUnified(bytes.NewReader(upload), nil, nil)
	if err == nil || !strings.Contains(err.Error(), `"rootfs/big" is a sparse file`) {
		t.Fatalf("GNU sparse import: %+v, %v", imp, err)
	}
	outcome(t, parent, s, v, imp, err, upload, nil)
}
