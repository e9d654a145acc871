// Package bench measures moatd from the outside, over its unix socket, the
// way DESIGN.md's targets were measured for LXD 5.0.2: API calls with a
// keep-alive client, no client start-up in the figure.
package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/internal/testdaemon"
)

// BenchmarkGetServer is GET /1.0 over the socket with a keep-alive client.
func BenchmarkGetServer(b *testing.B) {
	d := testdaemon.Start(b)
	c := d.HTTPClient()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := c.Get("http://moat/1.0")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkTimeToReady starts moatd on a fresh state dir and measures until
// its socket answers GET /1.0; each iteration stops it again.
func BenchmarkTimeToReady(b *testing.B) {
	testdaemon.RequireRoot(b)
	testdaemon.EnsureGroup(b)
	bin := testdaemon.Binary(b)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		sock := filepath.Join(dir, "unix.socket")
		start := time.Now()
		cmd := exec.Command(bin, "--state-dir", dir, "--group", testdaemon.Group)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			if ok := answers(sock); ok {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatal("moatd not ready in 10s")
			}
			time.Sleep(200 * time.Microsecond)
		}
		total += time.Since(start)
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/ready")
}

func answers(sock string) bool {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return false
	}
	defer c.Close()
	fmt.Fprint(c, "GET /1.0 HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.Contains(line, "200")
}

// BenchmarkIdleRSS reports the resident memory of an idle daemon after it
// served some requests.
func BenchmarkIdleRSS(b *testing.B) {
	d := testdaemon.Start(b)
	c := d.HTTPClient()
	for i := 0; i < 200; i++ {
		resp, err := c.Get("http://moat/1.0")
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	time.Sleep(200 * time.Millisecond)
	b.ReportMetric(float64(rssKiB(b, d.PID()))/1024, "MiB-RSS")
}

func rssKiB(b *testing.B, pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
