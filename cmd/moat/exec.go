package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

// exitCodeError ends the CLI with a status and no message: exec's exit
// status is the command's.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func (a *app) execCommand() *cobra.Command {
	var env []string
	var user, group uint32
	var cwd, mode string
	var forceTTY, noTTY, noStdin bool
	cmd := &cobra.Command{
		Use:   "exec [remote:]NAME [flags] [--] COMMAND...",
		Short: "Run a command in an instance; the exit status is the command's",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.instanceClient(args[0])
			if err != nil {
				return err
			}
			vars, err := parseAssignments(env)
			if err != nil {
				return err
			}
			switch {
			case forceTTY && noTTY:
				return fmt.Errorf("--force-interactive and --force-noninteractive are mutually exclusive")
			case forceTTY:
				mode = "interactive"
			case noTTY:
				mode = "non-interactive"
			}
			var interactive bool
			switch mode {
			case "auto", "":
				interactive = isTerminal(a.stdin) && isTerminalWriter(a.stdout)
			case "interactive":
				interactive = true
			case "non-interactive":
				interactive = false
			default:
				return fmt.Errorf("invalid --mode %q: use auto, interactive or non-interactive", mode)
			}
			req := api.InstanceExecPost{Command: args[1:], Environment: vars, Interactive: interactive,
				User: user, Group: group, Cwd: cwd}
			if interactive {
				if term := a.getenv("TERM"); term != "" {
					if _, set := req.Environment["TERM"]; !set {
						if req.Environment == nil {
							req.Environment = map[string]string{}
						}
						req.Environment["TERM"] = term
					}
				}
				if w, h, ok := termSize(a.stdout); ok {
					req.Width, req.Height = w, h
				}
			}
			stdin := a.stdin
			if noStdin {
				stdin = nil
			}
			code, err := a.runExec(cmd.Context(), c, name, req, stdin)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitCodeError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&env, "env", nil, "environment variable `KEY=VALUE` to set (repeatable)")
	f.Uint32Var(&user, "user", 0, "user `ID` to run the command as")
	f.Uint32Var(&group, "group", 0, "group `ID` to run the command as")
	f.StringVar(&cwd, "cwd", "", "`directory` to run the command in (default /root for root, else /)")
	f.StringVar(&mode, "mode", "auto", "terminal mode: auto, interactive or non-interactive")
	f.BoolVarP(&forceTTY, "force-interactive", "t", false, "force pseudo-terminal allocation")
	f.BoolVarP(&noTTY, "force-noninteractive", "T", false, "disable pseudo-terminal allocation")
	f.BoolVarP(&noStdin, "disable-stdin", "n", false, "don't send stdin (read from /dev/null)")
	return cmd
}

// runExec runs the command with the terminal in raw mode when it is
// interactive on a terminal, forwarding window resizes and signals.
func (a *app) runExec(ctx context.Context, c *client.Client, name string, req api.InstanceExecPost, stdin io.Reader) (int, error) {
	var restore func()
	if req.Interactive && isTerminal(a.stdin) {
		r, err := makeRaw(a.stdin.(*os.File))
		if err != nil {
			return -1, fmt.Errorf("cannot put the terminal in raw mode: %w", err)
		}
		restore = r
		defer restore()
	}
	// Signals go to the command. The CLI's context ends on SIGINT and
	// SIGTERM; the command decides when the exec is over instead.
	ctx = context.WithoutCancel(ctx)
	sigs := make(chan os.Signal, 8)
	forwarded := []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT, syscall.SIGTSTP}
	if req.Interactive {
		forwarded = append(forwarded, syscall.SIGWINCH)
	}
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	stderr := a.stderr
	args := client.ExecArgs{Stdin: stdin, Stdout: a.stdout, Stderr: stderr,
		Control: func(ctl *client.ExecControl) {
			go func() {
				for {
					select {
					case <-done:
						return
					case s := <-sigs:
						if s == syscall.SIGWINCH {
							if w, h, ok := termSize(a.stdout); ok {
								_ = ctl.Resize(w, h)
							}
							continue
						}
						_ = ctl.Signal(int(s.(syscall.Signal)))
					}
				}
			}()
		}}
	return c.ExecInstance(ctx, name, req, args)
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func termSize(w io.Writer) (int, int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, 0, false
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return 0, 0, false
	}
	return int(ws.Col), int(ws.Row), true
}

// makeRaw puts the terminal in raw mode (as cfmakeraw does) and returns
// the function restoring its previous mode.
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// parseIDFlag is a helper for uid/gid flags given as numbers.
func parseIDFlag(s string) (int64, error) {
	if s == "" || s == "-1" {
		return -1, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid id %q", s)
	}
	return int64(n), nil
}
