package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/moat/moat/client"
)

// app is one invocation of the CLI. Everything it touches outside the
// process (streams, environment) is a field, so tests run it in-process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// onListen, when set, runs once `monitor` is subscribed: tests cause
	// events only after that, instead of sleeping.
	onListen func()

	stateDir string
	project  string
	quiet    bool

	conf *clientConfig // loaded on first use
}

// run executes args and returns the exit status. Errors are printed as
// `Error: <message>`; a server error's message is the server's own text.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var exit *exitCodeError
		if errors.As(err, &exit) {
			return exit.code
		}
		fmt.Fprintf(a.stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "moat",
		Short: "Command line client for the Moat container manager",
		// Usage is noise after a server error; errors are printed by run.
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	stateDir := a.getenv("MOAT_DIR")
	if stateDir == "" {
		stateDir = filepath.Dir(client.DefaultUnixSocket)
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.stateDir, "state-dir", stateDir, "moatd state `directory` holding unix.socket (env MOAT_DIR)")
	pf.StringVar(&a.project, "project", "", "project `name` (default: the current project, set by \"moat project switch\")")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "don't print informational messages")
	root.AddCommand(
		a.infoCommand(),
		a.configCommand(),
		a.projectCommand(),
		a.operationCommand(),
		a.monitorCommand(),
		a.queryCommand(),
		a.remoteCommand(),
	)
	a.addInstanceCommands(root)
	return root
}

// connect returns a client for remote (as returned by parseRemote), scoped
// to the project in use.
func (a *app) connect(remote string) (*client.Client, error) {
	if err := a.checkRemote(remote); err != nil {
		return nil, err
	}
	c, err := a.connectRemote(remote)
	if err != nil {
		return nil, err
	}
	project, err := a.currentProject(remote)
	if err != nil {
		return nil, err
	}
	return c.UseProject(project), nil
}

// currentProject is --project, else the project stored by `project
// switch`, else "default".
func (a *app) currentProject(remote string) (string, error) {
	if a.project != "" {
		return a.project, nil
	}
	conf, err := a.config()
	if err != nil {
		return "", err
	}
	return conf.project(remote), nil
}

// infof prints an informational message unless --quiet.
func (a *app) infof(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintf(a.stdout, format+"\n", args...)
	}
}
