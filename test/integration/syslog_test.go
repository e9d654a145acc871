package integration

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/internal/testdaemon"
)

// TestSyslog points --syslog at a socket of the test's own and checks that
// the daemon's records arrive there.
func TestSyslog(t *testing.T) {
	testdaemon.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := testdaemon.Start(t, "--syslog", "--syslog-socket", path)
	d.Do("POST", "/1.0/projects", map[string]string{"name": "logged"})
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no syslog record mentioned the request: %v", err)
		}
		msg := string(buf[:n])
		if strings.Contains(msg, "moatd") && strings.Contains(msg, "/1.0/projects") {
			return
		}
	}
}
