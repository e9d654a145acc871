package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moat/moat/client"
)

func (a *app) fileCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "file", Short: "Manage files in instances"}
	cmd.AddCommand(a.filePushCommand(), a.filePullCommand(), a.fileDeleteCommand())
	return cmd
}

// instanceFile splits "[remote:]NAME/PATH".
func (a *app) instanceFile(arg string) (*client.Client, string, string, error) {
	ref, p, ok := strings.Cut(arg, "/")
	if !ok || ref == "" {
		return nil, "", "", fmt.Errorf("invalid target %q: use [remote:]NAME/PATH", arg)
	}
	c, name, err := a.instanceClient(ref)
	if err != nil {
		return nil, "", "", err
	}
	return c, name, "/" + p, nil
}

func (a *app) filePushCommand() *cobra.Command {
	var uid, gid, mode string
	var createDirs bool
	cmd := &cobra.Command{
		Use: "push SRC... [remote:]NAME/PATH", Short: "Copy local files into an instance (SRC - is stdin)", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, target := args[:len(args)-1], args[len(args)-1]
			c, name, dst, err := a.instanceFile(target)
			if err != nil {
				return err
			}
			u, err := parseIDFlag(uid)
			if err != nil {
				return fmt.Errorf("--uid: %w", err)
			}
			g, err := parseIDFlag(gid)
			if err != nil {
				return fmt.Errorf("--gid: %w", err)
			}
			m := -1
			if mode != "" {
				n, err := strconv.ParseUint(mode, 8, 32)
				if err != nil || n > 0o7777 {
					return fmt.Errorf("invalid --mode %q: an octal mode is required", mode)
				}
				m = int(n)
			}
			intoDir := strings.HasSuffix(target, "/") || len(srcs) > 1
			if createDirs {
				dir := dst
				if !intoDir {
					dir = path.Dir(dst)
				}
				if err := a.mkdirAll(cmd, c, name, dir); err != nil {
					return err
				}
			}
			for _, src := range srcs {
				p := dst
				if intoDir {
					if src == "-" {
						return fmt.Errorf("stdin needs a target file name, not a directory")
					}
					p = path.Join(dst, filepath.Base(src))
				}
				args := client.FileArgs{UID: u, GID: g, Mode: m, Type: "file"}
				if src == "-" {
					args.Content, args.Size = a.stdin, -1
				} else {
					f, err := os.Open(src)
					if err != nil {
						return err
					}
					defer f.Close()
					fi, err := f.Stat()
					if err != nil {
						return err
					}
					if fi.IsDir() {
						return fmt.Errorf("%s is a directory (recursive push is not supported)", src)
					}
					args.Content, args.Size = f, fi.Size()
					// Like lxc, the local file's mode and owner are
					// the defaults.
					if m < 0 {
						args.Mode = int(fi.Mode().Perm())
					}
					if st, ok := fi.Sys().(*syscall.Stat_t); ok {
						if u < 0 {
							args.UID = int64(st.Uid)
						}
						if g < 0 {
							args.GID = int64(st.Gid)
						}
					}
				}
				if err := c.CreateInstanceFile(cmd.Context(), name, p, args); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&uid, "uid", "-1", "owner `uid` in the instance (default: the local file's)")
	f.StringVar(&gid, "gid", "-1", "owner `gid` in the instance (default: the local file's)")
	f.StringVar(&mode, "mode", "", "octal `mode` (default: the local file's)")
	f.BoolVarP(&createDirs, "create-dirs", "p", false, "create missing parent directories")
	return cmd
}

// mkdirAll creates dir and its missing parents in the instance.
func (a *app) mkdirAll(cmd *cobra.Command, c *client.Client, name, dir string) error {
	cur := ""
	for _, part := range strings.Split(strings.Trim(path.Clean(dir), "/"), "/") {
		if part == "" {
			continue
		}
		cur += "/" + part
		rc, info, err := c.GetInstanceFile(cmd.Context(), name, cur)
		if rc != nil {
			rc.Close()
		}
		if err == nil {
			if info.Type != "directory" {
				return fmt.Errorf("%s exists and is not a directory", cur)
			}
			continue
		}
		if !client.IsNotFound(err) {
			return err
		}
		if err := c.CreateInstanceFile(cmd.Context(), name, cur, client.FileArgs{Type: "directory", UID: -1, GID: -1, Mode: 0o755}); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) filePullCommand() *cobra.Command {
	return &cobra.Command{
		Use: "pull [remote:]NAME/PATH... DST", Short: "Copy files out of an instance (DST - is stdout)", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, dst := args[:len(args)-1], args[len(args)-1]
			dstDir := false
			if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
				dstDir = true
			} else if len(srcs) > 1 {
				return fmt.Errorf("%s is not a directory", dst)
			}
			for _, src := range srcs {
				c, name, p, err := a.instanceFile(src)
				if err != nil {
					return err
				}
				rc, info, err := c.GetInstanceFile(cmd.Context(), name, p)
				if err != nil {
					return err
				}
				if info.Type == "directory" {
					return fmt.Errorf("%s is a directory (recursive pull is not supported)", src)
				}
				err = a.writePulled(rc, info, dst, dstDir, p)
				rc.Close()
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (a *app) writePulled(rc io.Reader, info *client.FileInfo, dst string, dstDir bool, src string) error {
	if dst == "-" {
		_, err := io.Copy(a.stdout, rc)
		return err
	}
	target := dst
	if dstDir {
		target = filepath.Join(dst, path.Base(src))
	}
	if info.Type == "symlink" {
		buf, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		os.Remove(target)
		return os.Symlink(string(buf), target)
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(info.Mode&0o777))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(os.FileMode(info.Mode & 0o777)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (a *app) fileDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use: "delete [remote:]NAME/PATH...", Aliases: []string{"rm"}, Short: "Delete files in an instance", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				c, name, p, err := a.instanceFile(arg)
				if err != nil {
					return err
				}
				if err := c.DeleteInstanceFile(cmd.Context(), name, p); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
