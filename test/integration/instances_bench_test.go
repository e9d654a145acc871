package integration

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// Container benchmarks, over the unix socket with a keep-alive client, as
// DESIGN.md's LXD 5.0.2 figures were measured:
//
//	go test -run '^$' -bench 'Container' -benchtime 20x ./test/integration/

// BenchmarkContainerCreateStart is POST /1.0/instances with start:true
// until the operation is done (the container's init runs), back to back:
// a create is empty overlay layers and one mount whatever the image, so
// nothing is prepared ahead and nothing is waited for between creates.
func BenchmarkContainerCreateStart(b *testing.B) {
	d, _ := withImage(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		launch(b, d, fmt.Sprintf("bench%d", i), nil)
	}
	b.StopTimer()
}

// BenchmarkContainerExecTrue is a non-interactive exec of `true` without
// websockets, until its operation reports the exit code.
func BenchmarkContainerExecTrue(b *testing.B) {
	d, _ := withImage(b)
	launch(b, d, "ex", nil)
	// One keep-alive client, as DESIGN.md's figures were measured.
	c := d.HTTPClient()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := testdaemon.DoWith(b, c, "POST", "/1.0/instances/ex/exec", map[string]any{"command": []string{"true"}}, nil)
		var op api.Operation
		r.Metadata(b, &op)
		testdaemon.DoWith(b, c, "GET", "/1.0/operations/"+op.ID+"/wait?timeout=30", nil, nil).Metadata(b, &op)
		if op.Status != "Success" || op.Metadata["return"].(float64) != 0 {
			b.Fatalf("exec true: %s %v", op.Status, op.Metadata["return"])
		}
	}
}

// BenchmarkContainerList10 is GET /1.0/instances?recursion=2 with 10
// running containers; it also reports the daemon's RSS with them.
func BenchmarkContainerList10(b *testing.B) {
	d, _ := withImage(b)
	for i := 0; i < 10; i++ {
		launch(b, d, fmt.Sprintf("l%d", i), nil)
	}
	c := d.HTTPClient()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := c.Get("http://moat/1.0/instances?recursion=2")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n < 1000 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
	b.StopTimer()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			b.ReportMetric(kb/1024, "daemon-RSS-MiB")
		}
	}
}
