package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

func (a *app) imageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Aliases: []string{"images"}, Short: "Manage images"}
	alias := &cobra.Command{Use: "alias", Short: "Manage image aliases"}
	alias.AddCommand(a.imageAliasCreateCommand(), a.imageAliasDeleteCommand(), a.imageAliasListCommand(), a.imageAliasRenameCommand())
	cmd.AddCommand(a.imageImportCommand(), a.imageListCommand(), a.imageShowCommand(), a.imageDeleteCommand(), alias)
	return cmd
}

// progressPrinter draws "Transferring image: N% (rate)" on stderr, at most
// every 100ms and always at 100%.
type progressPrinter struct {
	a     *app
	start time.Time
	mu    sync.Mutex
	last  time.Time
	pct   int
	drawn bool
}

func (p *progressPrinter) update(sent, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	pct := -1
	if total > 0 {
		pct = int(sent * 100 / total)
	}
	if pct != 100 && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	if pct == p.pct && pct == 100 {
		return
	}
	p.last, p.pct = now, pct
	rate := ""
	if el := now.Sub(p.start).Seconds(); el > 0 {
		rate = " (" + humanBytes(int64(float64(sent)/el)) + "/s)"
	}
	if pct >= 0 {
		fmt.Fprintf(p.a.stderr, "\rTransferring image: %d%%%s", pct, rate)
	} else {
		fmt.Fprintf(p.a.stderr, "\rTransferring image: %s%s", humanBytes(sent), rate)
	}
	p.drawn = true
}

func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.a.stderr)
	}
}

func (a *app) imageImportCommand() *cobra.Command {
	var aliases []string
	var public bool
	cmd := &cobra.Command{
		Use: "import FILE [remote:]", Short: "Import a unified image tarball", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, _, err := a.remoteArg(args[1:])
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			opts := client.ImageCreateArgs{Filename: filepath.Base(args[0]), Public: public}
			var pp *progressPrinter
			if !a.quiet {
				pp = &progressPrinter{a: a, start: time.Now(), pct: -2}
				opts.Progress = pp.update
			}
			fp, err := c.CreateImage(cmd.Context(), f, fi.Size(), opts)
			if pp != nil {
				pp.finish()
			}
			if err != nil {
				return err
			}
			for _, al := range aliases {
				if err := c.CreateImageAlias(cmd.Context(), api.ImageAliasesPost{Name: al, Target: fp}); err != nil {
					return fmt.Errorf("image %s imported, but alias %q: %w", fp, al, err)
				}
			}
			a.infof("Image imported with fingerprint: %s", fp)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&aliases, "alias", nil, "`alias` to create for the image (repeatable)")
	cmd.Flags().BoolVar(&public, "public", false, "make the image public (visible to untrusted clients)")
	return cmd
}

func (a *app) imageListCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "list [remote:] [FILTER...]", Aliases: []string{"ls"}, Short: "List images",
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, filters, err := a.remoteArg(args)
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			all, err := c.GetImages(cmd.Context())
			if err != nil {
				return err
			}
			imgs := []api.Image{}
			for _, img := range all {
				if matchImage(img, filters) {
					imgs = append(imgs, img)
				}
			}
			slices.SortFunc(imgs, func(x, y api.Image) int { return strings.Compare(x.Fingerprint, y.Fingerprint) })
			l := list{header: []string{"ALIAS", "FINGERPRINT", "PUBLIC", "DESCRIPTION", "ARCHITECTURE", "TYPE", "SIZE", "UPLOAD DATE"}, data: imgs}
			for _, img := range imgs {
				var names []string
				for _, al := range img.Aliases {
					names = append(names, al.Name)
				}
				typ := strings.ToUpper(img.Type)
				if typ == "" || typ == "CONTAINER" {
					typ = "CONTAINER"
				}
				l.rows = append(l.rows, []string{strings.Join(names, "\n"), shortFP(img.Fingerprint), yesNo(img.Public),
					img.Properties["description"], img.Architecture, typ, humanBytes(img.Size),
					img.UploadedAt.UTC().Format("Jan 2, 2006 at 3:04pm (MST)")})
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func shortFP(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}

func matchImage(img api.Image, filters []string) bool {
	for _, f := range filters {
		if k, v, ok := strings.Cut(f, "="); ok {
			if img.Properties[k] != v {
				return false
			}
			continue
		}
		match := strings.HasPrefix(img.Fingerprint, f)
		for _, al := range img.Aliases {
			match = match || strings.HasPrefix(al.Name, f)
		}
		if !match {
			return false
		}
	}
	return true
}

// resolveImage turns an alias or fingerprint prefix into a fingerprint.
func (a *app) resolveImage(cmd *cobra.Command, arg string) (*client.Client, string, error) {
	remote, ref, err := a.parseRemote(arg)
	if err != nil {
		return nil, "", err
	}
	c, err := a.connect(remote)
	if err != nil {
		return nil, "", err
	}
	src, err := imageSource(cmd.Context(), c, ref)
	if err != nil {
		return nil, "", err
	}
	if src.Alias != "" {
		al, err := c.GetImageAlias(cmd.Context(), src.Alias)
		if err != nil {
			return nil, "", err
		}
		return c, al.Target, nil
	}
	return c, src.Fingerprint, nil
}

func (a *app) imageShowCommand() *cobra.Command {
	return &cobra.Command{
		Use: "show [remote:]IMAGE", Short: "Show an image (by alias or fingerprint)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, fp, err := a.resolveImage(cmd, args[0])
			if err != nil {
				return err
			}
			img, _, err := c.GetImage(cmd.Context(), fp)
			if err != nil {
				return err
			}
			return a.printYAML(img)
		},
	}
}

func (a *app) imageDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use: "delete [remote:]IMAGE...", Aliases: []string{"rm"}, Short: "Delete images (by alias or fingerprint)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				c, fp, err := a.resolveImage(cmd, arg)
				if err != nil {
					return err
				}
				if err := c.DeleteImage(cmd.Context(), fp); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (a *app) imageAliasCreateCommand() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use: "create [remote:]ALIAS FINGERPRINT", Aliases: []string{"add"}, Short: "Create an image alias", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.connectNamed(args[0], "alias")
			if err != nil {
				return err
			}
			img, _, err := c.GetImage(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			return c.CreateImageAlias(cmd.Context(), api.ImageAliasesPost{Name: name, Target: img.Fingerprint, Description: description})
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "alias description")
	return cmd
}

func (a *app) imageAliasDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use: "delete [remote:]ALIAS", Aliases: []string{"rm"}, Short: "Delete an image alias", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.connectNamed(args[0], "alias")
			if err != nil {
				return err
			}
			return c.DeleteImageAlias(cmd.Context(), name)
		},
	}
}

func (a *app) imageAliasRenameCommand() *cobra.Command {
	return &cobra.Command{
		Use: "rename [remote:]ALIAS NEW", Aliases: []string{"mv"}, Short: "Rename an image alias", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, name, err := a.connectNamed(args[0], "alias")
			if err != nil {
				return err
			}
			return c.RenameImageAlias(cmd.Context(), name, args[1])
		},
	}
}

func (a *app) imageAliasListCommand() *cobra.Command {
	return listCommand(a, "List image aliases", []string{"ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"},
		func(ctx context.Context, c *client.Client) ([]api.ImageAlias, error) { return c.GetImageAliases(ctx) },
		func(al api.ImageAlias) string { return al.Name },
		func(al api.ImageAlias) []string {
			typ := strings.ToUpper(al.Type)
			if typ == "" {
				typ = "CONTAINER"
			}
			return []string{al.Name, shortFP(al.Target), typ, al.Description}
		})
}
