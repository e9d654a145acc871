package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// edit lets the user change current (YAML) and hands the result to apply.
// Piped stdin is taken as the new content (`moat config edit < file`); on a
// terminal $VISUAL or $EDITOR is opened, and reopened while apply fails so
// an edit is not lost to a typo.
func (a *app) edit(current []byte, apply func([]byte) error) error {
	if !isTerminal(a.stdin) {
		buf, err := io.ReadAll(a.stdin)
		if err != nil {
			return err
		}
		return apply(buf)
	}
	f, err := os.CreateTemp("", "moat-edit-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(current)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	in := bufio.NewReader(a.stdin)
	for {
		if err := a.runEditor(f.Name()); err != nil {
			return err
		}
		buf, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		err = apply(buf)
		if err == nil {
			return nil
		}
		fmt.Fprintf(a.stderr, "Error: %v\nPress enter to open the editor again or ctrl+c to abort change", err)
		if _, err := in.ReadString('\n'); err != nil {
			return err
		}
	}
}

func (a *app) runEditor(path string) error {
	editor := a.getenv("VISUAL")
	if editor == "" {
		editor = a.getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	// $EDITOR may carry arguments ("code --wait").
	argv := append(strings.Fields(editor), path)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.stdin, a.stdout, a.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("editor %s: %w", argv[0], err)
	}
	return nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
