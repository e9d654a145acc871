// Command moatd is the Moat daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/moat/moat/internal/daemon"
	lxcdriver "github.com/moat/moat/internal/instance/lxc"
)

func main() {
	// Helper sub-commands (forkstart, forkexecd) re-execute this binary:
	// they must run before anything else starts threads or opens files.
	lxcdriver.RunHelper(os.Args)
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("moatd", flag.ContinueOnError)
	stateDir := fs.String("state-dir", envOr("MOAT_DIR", "/var/lib/moat"), "state directory (env MOAT_DIR)")
	group := fs.String("group", "moat", "admin group: its members get full control over the unix socket")
	userGroup := fs.String("user-group", "", "serve STATE-DIR/user/unix.socket to this group, each user confined to a project of their own")
	level := fs.String("log-level", "", "log level: debug, info, warn or error (default warn, info with --verbose)")
	verbose := fs.Bool("verbose", false, "log at info level")
	useSyslog := fs.Bool("syslog", false, "also log to the local syslog socket")
	syslogSocket := fs.String("syslog-socket", "/dev/log", "the syslog socket --syslog writes to")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Println(daemon.Version)
		return 0
	}
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelInfo
	}
	if *level != "" {
		if err := lvl.UnmarshalText([]byte(*level)); err != nil {
			fmt.Fprintf(os.Stderr, "moatd: invalid --log-level %q: use debug, info, warn or error\n", *level)
			return 2
		}
	}
	var out io.Writer = os.Stderr
	if *useSyslog {
		w, err := syslog.Dial("unixgram", *syslogSocket, syslog.LOG_DAEMON|syslog.LOG_INFO, "moatd")
		if err != nil {
			fmt.Fprintf(os.Stderr, "moatd: cannot connect to syslog at %s: %v\n", *syslogSocket, err)
			return 1
		}
		out = io.MultiWriter(os.Stderr, w)
	}
	handler := slog.NewTextHandler(out, &slog.HandlerOptions{Level: lvl})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.New(ctx, daemon.Config{StateDir: *stateDir, Group: *group, UserGroup: *userGroup, LogHandler: handler})
	if err != nil {
		fmt.Fprintf(os.Stderr, "moatd: %v\n", err)
		return 1
	}
	if err := d.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "moatd: %v\n", err)
		_ = d.Shutdown(context.Background())
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil {
		fmt.Fprintf(os.Stderr, "moatd: shutdown: %v\n", err)
		return 1
	}
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
