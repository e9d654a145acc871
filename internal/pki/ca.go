package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// CA errors.
var (
	// ErrNoCA is returned by Verify when PKI mode is off.
	ErrNoCA = errors.New("no CA configured")
	// ErrUntrusted means the certificate does not chain to the CA or is
	// outside its validity period.
	ErrUntrusted = errors.New("certificate is not trusted by the CA")
	// ErrRevoked means the certificate's serial is in the CRL.
	ErrRevoked = errors.New("certificate has been revoked")
	// ErrCRLUnusable means a CRL file exists but no CRL that verifies
	// against the CA has been loaded, so no certificate is accepted.
	ErrCRLUnusable = errors.New("CRL is present but unusable")
)

// reloadInterval bounds how stale the CA and CRL can be. Checking costs
// two stat calls, done by at most one request per interval.
const reloadInterval = time.Second

// CA implements PKI mode: client certificates are trusted because they are
// signed by the CA in caPath and not revoked by the CRL in crlPath (in LXD
// terms server.ca and ca.crl in the state directory).
//
// Both files are re-read without a restart. Verify and Enabled stat them
// at most once per second and reload whichever changed (by inode, size,
// mtime or ctime). Polling was chosen over inotify because it needs no
// goroutine or lifecycle, keeps working when the files are replaced by
// rename, edited in place, or live on filesystems without inotify support,
// and is deterministic under a fake clock; the price is up to a second of
// staleness, which is fine for files an operator edits by hand.
//
// Reload rules, all failing closed:
//   - server.ca absent: PKI mode off; present but unreadable: error, the
//     previous CA stays in force.
//   - ca.crl absent: no revocation. Present but unparsable, not PEM
//     "X509 CRL", or not signed by the CA: error, and the previously
//     loaded CRL stays in force; if there was none, Verify refuses every
//     certificate until a valid CRL appears or the file is removed.
//   - A new CA re-validates the current CRL file against it.
//
// Errors found while reloading on the request path are passed to the
// error handler (by default logged with slog at error level).
type CA struct {
	caPath, crlPath string
	now             func() time.Time
	onError         func(error)

	nextCheck atomic.Int64 // unix nanoseconds; elects one reloader per interval
	state     atomic.Pointer[caState]

	mu       sync.Mutex // serialises reloads and guards the stamps
	caStamp  fileStamp
	crlStamp fileStamp
}

type caState struct {
	ca    *x509.Certificate // nil: PKI mode off
	roots *x509.CertPool
	// revoked holds the serials of the last valid CRL; nil without one.
	revoked map[string]struct{}
	// crlBroken is set when a CRL file exists but none has ever been
	// accepted, so there is no previous list to fall back on.
	crlBroken bool
}

// CAOption configures a CA.
type CAOption func(*CA)

// WithErrorHandler sets the function told about reload failures. It is
// called without locks held, at most once per change of the files.
func WithErrorHandler(f func(error)) CAOption { return func(c *CA) { c.onError = f } }

// WithClock sets the clock used for certificate validity and reload
// timing, for tests.
func WithClock(now func() time.Time) CAOption { return func(c *CA) { c.now = now } }

// NewCA loads the CA and CRL files. Missing files are fine (PKI mode off,
// no revocation). Unlike later reloads, any broken file is an error here:
// there is no previous state to keep, and a daemon that starts up without
// the revocation the operator configured is worse than one that does not
// start.
func NewCA(caPath, crlPath string, opts ...CAOption) (*CA, error) {
	c := &CA{
		caPath:  caPath,
		crlPath: crlPath,
		now:     time.Now,
		onError: func(err error) { slog.Error("PKI reload failed; previous CA/CRL stay in force", "err", err) },
	}
	for _, o := range opts {
		o(c)
	}
	c.state.Store(&caState{})
	if err := c.Reload(); err != nil {
		return nil, err
	}
	c.nextCheck.Store(c.now().Add(reloadInterval).UnixNano())
	return c, nil
}

// Enabled reports whether PKI mode is on, that is whether a CA is loaded.
func (c *CA) Enabled() bool {
	c.maybeReload()
	return c.state.Load().ca != nil
}

// Verify checks that cert is signed by the CA, that both are within their
// validity period, and that cert is not revoked. Errors wrap ErrNoCA,
// ErrUntrusted, ErrRevoked or ErrCRLUnusable.
func (c *CA) Verify(cert *x509.Certificate) error {
	c.maybeReload()
	s := c.state.Load()
	if s.ca == nil {
		return ErrNoCA
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       s.roots,
		CurrentTime: c.now(),
		// Server certificates of cluster members are checked here too.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if s.crlBroken {
		return ErrCRLUnusable
	}
	if _, ok := s.revoked[cert.SerialNumber.String()]; ok {
		return fmt.Errorf("%w (serial %x)", ErrRevoked, cert.SerialNumber)
	}
	return nil
}

// maybeReload runs a reload if the interval has passed. The compare and
// swap lets exactly one caller do the work; the others carry on with the
// current state instead of queueing behind the file system.
func (c *CA) maybeReload() {
	now := c.now().UnixNano()
	next := c.nextCheck.Load()
	if now < next || !c.nextCheck.CompareAndSwap(next, now+int64(reloadInterval)) {
		return
	}
	if err := c.Reload(); err != nil {
		c.onError(err)
	}
}

// Reload re-reads whichever of the CA and CRL files changed since the last
// load. It is called automatically; calling it directly (for example on
// SIGHUP) makes a change effective at once. On error the affected part of
// the previous state stays in force.
func (c *CA) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()

	caStamp, crlStamp := stamp(c.caPath), stamp(c.crlPath)
	if caStamp == c.caStamp && crlStamp == c.crlStamp {
		return nil
	}
	cur := c.state.Load()
	next := *cur
	var errs []error

	if caStamp != c.caStamp {
		ca, err := loadCACert(c.caPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			next.ca, next.roots = nil, nil
		case err != nil:
			errs = append(errs, err)
		default:
			next.ca = ca
			next.roots = x509.NewCertPool()
			next.roots.AddCert(ca)
		}
	}

	if crlStamp != c.crlStamp || next.ca != cur.ca {
		revoked, err := loadCRL(c.crlPath, next.ca)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			next.revoked, next.crlBroken = nil, false
		case next.ca == nil:
			// PKI mode is off; the CRL is checked again when a CA appears.
		case err != nil:
			errs = append(errs, err)
			next.crlBroken = next.revoked == nil
		default:
			next.revoked, next.crlBroken = revoked, false
		}
	}

	c.caStamp, c.crlStamp = caStamp, crlStamp
	c.state.Store(&next)
	return errors.Join(errs...)
}

func loadCACert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("CA %s: no PEM CERTIFICATE block", path)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", path, err)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("CA %s: certificate is not a CA (basic constraints)", path)
	}
	return ca, nil
}

// loadCRL returns the revoked serials of the CRL at path, which must be
// signed by ca. With a nil ca it only reports whether the file exists.
func loadCRL(path string, ca *x509.Certificate) (map[string]struct{}, error) {
	data, err := os.ReadFile(path)
	if err != nil || ca == nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return nil, fmt.Errorf("CRL %s: no PEM X509 CRL block", path)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CRL %s: %w", path, err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("CRL %s: not signed by the CA: %w", path, err)
	}
	revoked := make(map[string]struct{}, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		revoked[e.SerialNumber.String()] = struct{}{}
	}
	return revoked, nil
}

// fileStamp identifies one version of a file. A rename-replace changes the
// inode, an in-place edit changes size or mtime, and ctime catches edits
// that restore the old mtime. The zero value means "does not exist".
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
	err          string // a stat error other than "not exist"
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}
	}
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	}
	return fileStamp{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
}
