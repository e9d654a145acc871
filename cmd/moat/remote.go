package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat/moat/client"
	"github.com/moat/moat/internal/pki"
	"github.com/moat/moat/internal/token"
)

// Files of the config directory ($MOAT_CONF, default ~/.config/moat), as
// lxc lays them out: the client key pair (generated on first use), an
// optional CA for PKI mode, and one pinned server certificate per remote.
const (
	clientCertFile = "client.crt"
	clientKeyFile  = "client.key"
	clientCAFile   = "client.ca"
	serverCertsDir = "servercerts"
)

func (a *app) confDir() string { return filepath.Dir(a.configPath()) }

func (a *app) serverCertPath(remote string) string {
	return filepath.Join(a.confDir(), serverCertsDir, remote+".crt")
}

// clientKeyPair returns the client certificate and key (PEM), generating
// a P-384 pair on first use (key 0600).
func (a *app) clientKeyPair() (certPEM, keyPEM string, err error) {
	dir := a.confDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	certPath, keyPath := filepath.Join(dir, clientCertFile), filepath.Join(dir, clientKeyFile)
	if _, err := pki.LoadOrGenerate(certPath, keyPath, false); err != nil {
		return "", "", fmt.Errorf("client key pair: %w", err)
	}
	c, err := os.ReadFile(certPath)
	if err != nil {
		return "", "", err
	}
	k, err := os.ReadFile(keyPath)
	if err != nil {
		return "", "", err
	}
	return string(c), string(k), nil
}

// clientCA is the content of client.ca ("" when absent: no PKI mode).
func (a *app) clientCA() (string, error) {
	buf, err := os.ReadFile(filepath.Join(a.confDir(), clientCAFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return string(buf), err
}

// httpsClient connects to url with the client key pair, verifying the
// server with the CA when ca is set, else with the pinned serverPEM.
func (a *app) httpsClient(url, serverPEM, ca string) (*client.Client, error) {
	cert, key, err := a.clientKeyPair()
	if err != nil {
		return nil, err
	}
	return client.ConnectHTTPS(url, &client.HTTPSArgs{
		ConnectArgs:   client.ConnectArgs{UserAgent: "moat"},
		TLSClientCert: cert, TLSClientKey: key, TLSServerCert: serverPEM, TLSCA: ca,
	})
}

// connectRemote returns an unscoped client for remote.
func (a *app) connectRemote(remote string) (*client.Client, error) {
	if remote == localRemote {
		return client.ConnectUnix(filepath.Join(a.stateDir, "unix.socket"), &client.ConnectArgs{UserAgent: "moat"})
	}
	conf, err := a.config()
	if err != nil {
		return nil, err
	}
	rc := conf.Remotes[remote]
	if rc.Addr == "" {
		return nil, fmt.Errorf("remote %q doesn't exist", remote)
	}
	ca, err := a.clientCA()
	if err != nil {
		return nil, err
	}
	var serverPEM string
	if ca == "" {
		buf, err := os.ReadFile(a.serverCertPath(remote))
		if err != nil {
			return nil, fmt.Errorf("remote %q has no pinned server certificate (%v): remove it and add it again", remote, err)
		}
		serverPEM = string(buf)
	}
	return a.httpsClient(rc.Addr, serverPEM, ca)
}

func (a *app) remoteCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "remote", Short: "Manage the list of remote servers"}
	cmd.AddCommand(a.remoteAddCommand(), a.remoteListCommand(), a.remoteRemoveCommand(),
		a.remoteRenameCommand(), a.remoteSwitchCommand(), a.remoteGetDefaultCommand())
	return cmd
}

func validRemoteName(name string) error {
	if name == "" || strings.ContainsAny(name, ":/\\ \t\n") || strings.HasPrefix(name, "-") || name == "." || name == ".." {
		return fmt.Errorf("invalid remote name %q", name)
	}
	return nil
}

func (a *app) remoteAddCommand() *cobra.Command {
	var accept bool
	var tokenFlag, password string
	cmd := &cobra.Command{
		Use:   "add NAME URL|TOKEN",
		Short: "Add a remote server, by address (fingerprint check) or by trust token",
		Long: `Add a remote server.

With a URL (https://HOST[:PORT], port 8443 by default), the server's
certificate fingerprint is shown for confirmation: answer y, or better, type
the fingerprint the administrator gave you. If the server does not trust
this client yet, give a trust token with --token (or the legacy trust
password with --password), or type it when asked.

With a trust token (from "moat config trust add") in place of the URL, the
token's addresses are tried in turn and the server's certificate must match
the fingerprint in the token: no prompt.

The server certificate is pinned: if it later changes, connections are
refused.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, target := args[0], args[1]
			if err := validRemoteName(name); err != nil {
				return err
			}
			conf, err := a.config()
			if err != nil {
				return err
			}
			if name == localRemote || conf.Remotes[name].Addr != "" {
				return fmt.Errorf("remote %q already exists", name)
			}
			in := bufio.NewReader(a.stdin)
			var addr, serverPEM string
			if tok, err := token.Decode(target); err == nil {
				addr, serverPEM, err = a.addByToken(cmd.Context(), tok, strings.TrimSpace(target))
				if err != nil {
					return err
				}
			} else {
				secret := tokenFlag
				if secret == "" {
					secret = password
				}
				addr, serverPEM, err = a.addByURL(cmd.Context(), name, target, accept, secret, in)
				if err != nil {
					return err
				}
			}
			if serverPEM != "" {
				if err := writePrivate(a.serverCertPath(name), []byte(serverPEM), 0o644); err != nil {
					return err
				}
			}
			if conf.Remotes == nil {
				conf.Remotes = map[string]remoteConfig{}
			}
			rc := conf.Remotes[name]
			rc.Addr = addr
			conf.Remotes[name] = rc
			return conf.save()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&accept, "accept-certificate", false, "accept the server certificate without showing its fingerprint")
	f.StringVar(&tokenFlag, "token", "", "trust `token` to redeem if the server does not trust this client")
	f.StringVar(&password, "password", "", "trust token, or the server's legacy trust password")
	return cmd
}

// addByToken tries the token's addresses in order. A server whose
// certificate does not have the token's fingerprint is not talked to.
func (a *app) addByToken(ctx context.Context, tok token.Token, raw string) (addr, serverPEM string, err error) {
	if _, _, err := a.clientKeyPair(); err != nil {
		return "", "", err
	}
	var errs []error
	for _, hostport := range tok.Addresses {
		url, err := client.NormalizeHTTPSURL(hostport)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cert, err := client.GetServerCertificate(ctx, url)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if fp := client.CertFingerprint(cert); fp != strings.ToLower(tok.Fingerprint) {
			errs = append(errs, fmt.Errorf("%s presented certificate %s, not the one named in the token (%s): possible interception, address skipped", url, fp, tok.Fingerprint))
			continue
		}
		serverPEM = client.CertPEM(cert)
		c, err := a.httpsClient(url, serverPEM, "")
		if err != nil {
			return "", "", err
		}
		// Redeem even if already trusted: the server then answers 409
		// and the token is used up, so it cannot be passed on.
		if err := c.RedeemToken(ctx, raw); err != nil && client.StatusCode(err) != 409 {
			return "", "", fmt.Errorf("%s refused the token: %w", url, err)
		}
		if err := checkTrusted(ctx, c, url); err != nil {
			return "", "", err
		}
		return url, serverPEM, nil
	}
	return "", "", fmt.Errorf("no address in the token could be used: %w", errors.Join(errs...))
}

// addByURL checks the server's certificate (prompt, or the CA in PKI
// mode), then redeems secret if the server does not trust us yet.
func (a *app) addByURL(ctx context.Context, name, target string, accept bool, secret string, in *bufio.Reader) (addr, serverPEM string, err error) {
	url, err := client.NormalizeHTTPSURL(target)
	if err != nil {
		return "", "", err
	}
	ca, err := a.clientCA()
	if err != nil {
		return "", "", err
	}
	var fp string
	if ca == "" {
		cert, err := client.GetServerCertificate(ctx, url)
		if err != nil {
			return "", "", err
		}
		fp = client.CertFingerprint(cert)
		if !accept {
			fmt.Fprintf(a.stdout, "Certificate fingerprint: %s\nok (y/n/[fingerprint])? ", fp)
			line, err := readLine(in)
			if err != nil {
				return "", "", fmt.Errorf("remote not added: no answer to the fingerprint prompt: %w", err)
			}
			switch ans := strings.ToLower(line); {
			case ans == "y" || ans == "yes" || ans == fp:
			case isHexFingerprint(ans):
				return "", "", fmt.Errorf("remote not added: the server presented certificate %s, not %s: someone may be intercepting the connection", fp, ans)
			default:
				return "", "", errors.New("remote not added: server certificate not accepted")
			}
		}
		serverPEM = client.CertPEM(cert)
	}
	c, err := a.httpsClient(url, serverPEM, ca)
	if err != nil {
		return "", "", err
	}
	srv, _, err := c.GetServer(ctx)
	if err != nil {
		return "", "", err
	}
	if srv.Auth == "trusted" {
		return url, serverPEM, nil
	}
	if secret == "" {
		fmt.Fprintf(a.stdout, "Trust token (or legacy trust password) for %s: ", name)
		secret, err = readLine(in)
		if err != nil || secret == "" {
			return "", "", fmt.Errorf("remote not added: the server does not trust this client; give a trust token with --token")
		}
	}
	if tok, decErr := token.Decode(secret); decErr == nil {
		// The token names the server it was issued by: a token from
		// another server, or a certificate swapped in between, is refused
		// before the secret is sent.
		if fp != "" && strings.ToLower(tok.Fingerprint) != fp {
			return "", "", fmt.Errorf("remote not added: the token was issued by the server with certificate %s, but %s presented %s: someone may be intercepting the connection", tok.Fingerprint, url, fp)
		}
		err = c.RedeemToken(ctx, strings.TrimSpace(secret))
	} else {
		err = c.RedeemPassword(ctx, secret)
	}
	if err != nil {
		return "", "", fmt.Errorf("remote not added: %w", err)
	}
	if err := checkTrusted(ctx, c, url); err != nil {
		return "", "", err
	}
	return url, serverPEM, nil
}

func checkTrusted(ctx context.Context, c *client.Client, url string) error {
	srv, _, err := c.GetServer(ctx)
	if err != nil {
		return err
	}
	if srv.Auth != "trusted" {
		return fmt.Errorf("remote not added: %s still does not trust this client (auth: %s)", url, srv.Auth)
	}
	return nil
}

func isHexFingerprint(s string) bool {
	if len(s) < 8 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef:", r) {
			return false
		}
	}
	return true
}

// readLine reads one line of an answer; EOF without any text is an error.
func readLine(in *bufio.Reader) (string, error) {
	line, err := in.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// writePrivate writes a file atomically in a directory only the user can
// enter.
func writePrivate(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (a *app) remoteListCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List the remotes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conf, err := a.config()
			if err != nil {
				return err
			}
			type entry struct {
				Name    string `json:"name"`
				Addr    string `json:"addr"`
				Auth    string `json:"auth_type"`
				Project string `json:"project"`
				Default bool   `json:"default"`
			}
			names := []string{localRemote}
			for n, rc := range conf.Remotes {
				if rc.Addr != "" && n != localRemote {
					names = append(names, n)
				}
			}
			slices.Sort(names)
			def := a.defaultRemote()
			var l list
			l.header = []string{"NAME", "URL", "AUTH TYPE", "PROJECT"}
			var data []entry
			for _, n := range names {
				e := entry{Name: n, Addr: conf.Remotes[n].Addr, Auth: "tls", Project: conf.project(n), Default: n == def}
				if n == localRemote {
					e.Addr, e.Auth = "unix://"+filepath.Join(a.stateDir, "unix.socket"), "file access"
				}
				shown := n
				if e.Default {
					shown += " (current)"
				}
				l.rows = append(l.rows, []string{shown, e.Addr, e.Auth, e.Project})
				data = append(data, e)
			}
			l.data = data
			return a.printList(format, l)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

// existingRemote checks that name is an added (HTTPS) remote.
func (a *app) existingRemote(name string) (*clientConfig, error) {
	conf, err := a.config()
	if err != nil {
		return nil, err
	}
	if name == localRemote {
		return nil, fmt.Errorf("remote %q is the local daemon and cannot be changed", name)
	}
	if conf.Remotes[name].Addr == "" {
		return nil, fmt.Errorf("remote %q doesn't exist", name)
	}
	return conf, nil
}

func (a *app) remoteRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use: "remove NAME", Aliases: []string{"rm"}, Short: "Remove a remote", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			conf, err := a.existingRemote(name)
			if err != nil {
				return err
			}
			if a.defaultRemote() == name {
				return fmt.Errorf("remote %q is the default remote: switch to another one first", name)
			}
			delete(conf.Remotes, name)
			if err := conf.save(); err != nil {
				return err
			}
			if err := os.Remove(a.serverCertPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return nil
		},
	}
}

func (a *app) remoteRenameCommand() *cobra.Command {
	return &cobra.Command{
		Use: "rename OLD NEW", Short: "Rename a remote", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			old, name := args[0], args[1]
			conf, err := a.existingRemote(old)
			if err != nil {
				return err
			}
			if err := validRemoteName(name); err != nil {
				return err
			}
			if name == localRemote || conf.Remotes[name].Addr != "" {
				return fmt.Errorf("remote %q already exists", name)
			}
			// Certificate first: a failure leaves the config unchanged.
			if err := os.Rename(a.serverCertPath(old), a.serverCertPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			conf.Remotes[name] = conf.Remotes[old]
			delete(conf.Remotes, old)
			if conf.DefaultRemote == old {
				conf.DefaultRemote = name
			}
			return conf.save()
		},
	}
}

func (a *app) remoteSwitchCommand() *cobra.Command {
	return &cobra.Command{
		Use: "switch NAME", Short: "Make a remote the default one", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := a.checkRemote(name); err != nil {
				return err
			}
			conf, err := a.config()
			if err != nil {
				return err
			}
			conf.DefaultRemote = name
			if name == localRemote {
				conf.DefaultRemote = ""
			}
			return conf.save()
		},
	}
}

func (a *app) remoteGetDefaultCommand() *cobra.Command {
	return &cobra.Command{
		Use: "get-default", Short: "Print the default remote", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := a.config(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, a.defaultRemote())
			return nil
		},
	}
}
