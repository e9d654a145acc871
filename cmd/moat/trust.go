package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
	"github.com/moat/moat/client"
)

// trustCommand manages the trust store (`moat config trust`, as lxc).
func (a *app) trustCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "trust", Short: "Manage trusted clients and trust tokens"}
	cmd.AddCommand(a.trustAddCommand(), a.trustAddCertificateCommand(), a.trustListCommand(),
		a.trustListTokensCommand(), a.trustRevokeTokenCommand(), a.trustShowCommand(),
		a.trustEditCommand(), a.trustRemoveCommand())
	return cmd
}

// restrictionFlags are --restricted and --projects.
type restrictionFlags struct {
	name       string
	restricted bool
	projects   string
}

func (f *restrictionFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "", "client `name`")
	cmd.Flags().BoolVar(&f.restricted, "restricted", false, "confine the client to the projects given with --projects")
	cmd.Flags().StringVar(&f.projects, "projects", "", "comma-separated `projects` a restricted client may use")
}

func (f *restrictionFlags) projectList() ([]string, error) {
	ps := []string{}
	for _, p := range strings.Split(f.projects, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 && !f.restricted {
		return nil, fmt.Errorf("--projects needs --restricted")
	}
	return ps, nil
}

// remoteConnect resolves an optional leading "remote:" and connects.
func (a *app) remoteConnect(args []string) (*client.Client, []string, error) {
	remote, rest, err := a.remoteArg(args)
	if err != nil {
		return nil, nil, err
	}
	c, err := a.connect(remote)
	return c, rest, err
}

func (a *app) trustAddCommand() *cobra.Command {
	var f restrictionFlags
	cmd := &cobra.Command{
		Use:   "add [remote:] [NAME]",
		Short: "Issue a single-use trust token for a new client",
		Args:  cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, rest, err := a.remoteConnect(args)
			if err != nil {
				return err
			}
			name := f.name
			switch {
			case len(rest) > 1:
				return fmt.Errorf("too many arguments")
			case len(rest) == 1 && name != "" && name != rest[0]:
				return fmt.Errorf("the name is given twice (%q and --name %q)", rest[0], name)
			case len(rest) == 1:
				name = rest[0]
			}
			if name == "" {
				return fmt.Errorf("missing client name: give --name")
			}
			projects, err := f.projectList()
			if err != nil {
				return err
			}
			tok, err := c.CreateCertificateToken(cmd.Context(), name, f.restricted, projects)
			if err != nil {
				return err
			}
			if a.quiet {
				fmt.Fprintln(a.stdout, tok.Token)
				return nil
			}
			fmt.Fprintf(a.stdout, "Client %s certificate add token:\n%s\n", name, tok.Token)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) trustAddCertificateCommand() *cobra.Command {
	var f restrictionFlags
	cmd := &cobra.Command{
		Use:   "add-certificate [remote:] FILE",
		Short: "Trust a client certificate (PEM file)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, rest, err := a.remoteConnect(args)
			if err != nil {
				return err
			}
			if len(rest) != 1 {
				return fmt.Errorf("expected one certificate file")
			}
			buf, err := os.ReadFile(rest[0])
			if err != nil {
				return err
			}
			cert, err := client.ParseCertPEM(buf)
			if err != nil {
				return fmt.Errorf("%s: %w", rest[0], err)
			}
			projects, err := f.projectList()
			if err != nil {
				return err
			}
			return c.AddCertificate(cmd.Context(), cert, f.name, f.restricted, projects)
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) trustListCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "list [remote:]", Aliases: []string{"ls"}, Short: "List trusted certificates", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.remoteConnect(args)
			if err != nil {
				return err
			}
			certs, err := c.GetCertificates(cmd.Context())
			if err != nil {
				return err
			}
			l := list{header: []string{"NAME", "TYPE", "FINGERPRINT", "RESTRICTED", "PROJECTS", "EXPIRY DATE"}, data: certs}
			for _, ct := range certs {
				expiry := ""
				if x, err := client.ParseCertPEM([]byte(ct.Certificate)); err == nil {
					expiry = x.NotAfter.UTC().Format(time.DateOnly)
				}
				fp := ct.Fingerprint
				if format == formatTable && len(fp) > 12 {
					fp = fp[:12]
				}
				l.rows = append(l.rows, []string{ct.Name, ct.Type, fp, yesNo(ct.Restricted), strings.Join(ct.Projects, ","), expiry})
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func (a *app) trustListTokensCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "list-tokens [remote:]", Short: "List pending trust tokens", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.remoteConnect(args)
			if err != nil {
				return err
			}
			toks, err := c.GetCertificateTokens(cmd.Context())
			if err != nil {
				return err
			}
			l := list{header: []string{"NAME", "ID", "RESTRICTED", "PROJECTS", "EXPIRES AT", "TOKEN"}, data: toks}
			if toks == nil {
				l.data = []client.CertificateToken{}
			}
			for _, t := range toks {
				exp := "never"
				if !t.ExpiresAt.IsZero() {
					exp = t.ExpiresAt.Local().Format(time.DateTime)
				}
				l.rows = append(l.rows, []string{t.Name, t.ID, yesNo(t.Restricted), strings.Join(t.Projects, ","), exp, t.Token})
			}
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func (a *app) trustRevokeTokenCommand() *cobra.Command {
	return &cobra.Command{
		Use: "revoke-token [remote:] NAME|ID", Short: "Revoke a pending trust token", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, rest, err := a.remoteConnect(args)
			if err != nil {
				return err
			}
			if len(rest) != 1 {
				return fmt.Errorf("expected one token name or id")
			}
			return c.RevokeCertificateToken(cmd.Context(), rest[0])
		},
	}
}

// certificateArg connects to the remote of "[remote:]FINGERPRINT".
func (a *app) certificateArg(arg string) (*client.Client, string, error) {
	remote, fp, err := a.parseRemote(arg)
	if err != nil {
		return nil, "", err
	}
	if fp == "" {
		return nil, "", fmt.Errorf("missing certificate fingerprint")
	}
	c, err := a.connect(remote)
	return c, fp, err
}

func (a *app) trustShowCommand() *cobra.Command {
	return &cobra.Command{
		Use: "show [remote:]FINGERPRINT", Short: "Show a trusted certificate", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, fp, err := a.certificateArg(args[0])
			if err != nil {
				return err
			}
			cert, _, err := c.GetCertificate(cmd.Context(), fp)
			if err != nil {
				return err
			}
			return a.printYAML(cert)
		},
	}
}

func (a *app) trustEditCommand() *cobra.Command {
	return &cobra.Command{
		Use: "edit [remote:]FINGERPRINT", Short: "Edit a trusted certificate as YAML", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, fp, err := a.certificateArg(args[0])
			if err != nil {
				return err
			}
			cert, etag, err := c.GetCertificate(cmd.Context(), fp)
			if err != nil {
				return err
			}
			cur, err := toYAML(api.CertificatePut{Name: cert.Name, Type: cert.Type, Restricted: cert.Restricted, Projects: cert.Projects, Certificate: cert.Certificate})
			if err != nil {
				return err
			}
			return a.edit(cur, func(buf []byte) error {
				var put api.CertificatePut
				if err := yaml.Unmarshal(buf, &put); err != nil {
					return err
				}
				return c.UpdateCertificate(cmd.Context(), cert.Fingerprint, put, etag)
			})
		},
	}
}

func (a *app) trustRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use: "remove [remote:]FINGERPRINT", Aliases: []string{"rm"}, Short: "Remove a trusted certificate", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, fp, err := a.certificateArg(args[0])
			if err != nil {
				return err
			}
			return c.DeleteCertificate(cmd.Context(), fp)
		},
	}
}
