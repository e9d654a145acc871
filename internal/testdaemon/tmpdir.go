package testdaemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// processTempDir makes a temporary directory for caches that live as long
// as the test binary (the built moatd, the busybox image). A test binary
// has no hook that runs when it exits, so the directory is named after the
// process instead, and each new one first removes the directories of test
// processes that are gone: runs no longer pile up in /tmp.
func processTempDir(prefix string) (string, error) {
	base := os.TempDir()
	old, _ := filepath.Glob(filepath.Join(base, prefix+"*"))
	for _, d := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), prefix))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(d)
	}
	dir := filepath.Join(base, fmt.Sprintf("%s%d", prefix, os.Getpid()))
	if err := os.RemoveAll(dir); err != nil { // left by an earlier process with our pid
		return "", err
	}
	return dir, os.Mkdir(dir, 0o700)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
