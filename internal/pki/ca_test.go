package pki

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0.UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// caEnv is a state directory with server.ca and ca.crl paths, a fake
// clock and a record of reported reload errors.
type caEnv struct {
	t       *testing.T
	caPath  string
	crlPath string
	clock   *fakeClock
	mu      sync.Mutex
	errs    []error
}

func newCAEnv(t *testing.T) *caEnv {
	dir := t.TempDir()
	return &caEnv{t: t, caPath: filepath.Join(dir, "server.ca"), crlPath: filepath.Join(dir, "ca.crl"), clock: newFakeClock()}
}

func (e *caEnv) open() (*CA, error) {
	return NewCA(e.caPath, e.crlPath, WithClock(e.clock.now), WithErrorHandler(func(err error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.errs = append(e.errs, err)
	}))
}

func (e *caEnv) mustOpen() *CA {
	e.t.Helper()
	ca, err := e.open()
	if err != nil {
		e.t.Fatal(err)
	}
	return ca
}

// tick lets the next request notice file changes.
func (e *caEnv) tick() { e.clock.advance(reloadInterval) }

func (e *caEnv) reported() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.errs)
}

func expectVerify(t *testing.T, leaf *x509.Certificate, got, want error) {
	t.Helper()
	if want == nil && got != nil {
		t.Errorf("Verify(serial %s) = %v, want success", leaf.SerialNumber, got)
	}
	if want != nil && !errors.Is(got, want) {
		t.Errorf("Verify(serial %s) = %v, want %v", leaf.SerialNumber, got, want)
	}
}

func check(t *testing.T, ca *CA, c *testCA, serial int64, want error) {
	t.Helper()
	leaf := issue(t, c, leafOpts{serial: serial})
	expectVerify(t, leaf, ca.Verify(leaf), want)
}

func TestCADisabledWithoutFiles(t *testing.T) {
	e := newCAEnv(t)
	ca := e.mustOpen()
	if ca.Enabled() {
		t.Error("Enabled with no server.ca")
	}
	check(t, ca, newTestCA(t, "A"), 1, ErrNoCA)
}

func TestCAVerify(t *testing.T) {
	e := newCAEnv(t)
	a, other := newTestCA(t, "A"), newTestCA(t, "other")
	a.writeCert(t, e.caPath)
	ca := e.mustOpen()
	if !ca.Enabled() {
		t.Fatal("not Enabled with server.ca present")
	}
	check(t, ca, a, 5, nil)
	check(t, ca, other, 5, ErrUntrusted)
	check(t, ca, nil, 5, ErrUntrusted) // self-signed

	expired := issue(t, a, leafOpts{notBefore: t0.Add(-48 * time.Hour), notAfter: t0.Add(-time.Hour)})
	expectVerify(t, expired, ca.Verify(expired), ErrUntrusted)
	future := issue(t, a, leafOpts{notBefore: t0.Add(time.Hour)})
	expectVerify(t, future, ca.Verify(future), ErrUntrusted)
}

func TestCARevocation(t *testing.T) {
	e := newCAEnv(t)
	a := newTestCA(t, "A")
	a.writeCert(t, e.caPath)
	ca := e.mustOpen()
	check(t, ca, a, 7, nil)

	a.writeCRL(t, e.crlPath, a, 7)
	e.tick()
	check(t, ca, a, 7, ErrRevoked)
	check(t, ca, a, 8, nil)

	// Removing the CRL removes revocation.
	if err := os.Remove(e.crlPath); err != nil {
		t.Fatal(err)
	}
	e.tick()
	check(t, ca, a, 7, nil)
	if n := e.reported(); n != 0 {
		t.Errorf("%d reload errors reported, want 0: %v", n, e.errs)
	}
}

func TestCAReloadIsRateLimited(t *testing.T) {
	e := newCAEnv(t)
	a := newTestCA(t, "A")
	a.writeCert(t, e.caPath)
	ca := e.mustOpen()
	a.writeCRL(t, e.crlPath, a, 7)

	e.clock.advance(reloadInterval / 2)
	check(t, ca, a, 7, nil) // not looked at yet
	e.clock.advance(reloadInterval / 2)
	check(t, ca, a, 7, ErrRevoked)
}

func TestCAInPlaceEdit(t *testing.T) {
	e := newCAEnv(t)
	a := newTestCA(t, "A")
	a.writeCert(t, e.caPath)
	a.writeCRL(t, e.crlPath, a, 1)
	ca := e.mustOpen()
	check(t, ca, a, 2, nil)

	// Rewrite the same inode, as an editor saving in place does.
	tmp := filepath.Join(t.TempDir(), "crl")
	a.writeCRL(t, tmp, a, 1, 2)
	data, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.crlPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.tick()
	check(t, ca, a, 2, ErrRevoked)
}

func TestCASwapAtRuntime(t *testing.T) {
	e := newCAEnv(t)
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	a.writeCert(t, e.caPath)
	ca := e.mustOpen()
	check(t, ca, a, 1, nil)
	check(t, ca, b, 1, ErrUntrusted)

	b.writeCert(t, e.caPath)
	e.tick()
	check(t, ca, a, 1, ErrUntrusted)
	check(t, ca, b, 1, nil)

	// Removing server.ca turns PKI mode off.
	if err := os.Remove(e.caPath); err != nil {
		t.Fatal(err)
	}
	e.tick()
	if ca.Enabled() {
		t.Error("still Enabled after server.ca removal")
	}
	check(t, ca, b, 1, ErrNoCA)

	a.writeCert(t, e.caPath)
	e.tick()
	if !ca.Enabled() {
		t.Error("not Enabled after server.ca came back")
	}
	check(t, ca, a, 1, nil)
	if n := e.reported(); n != 0 {
		t.Errorf("%d reload errors reported, want 0: %v", n, e.errs)
	}
}

func TestCABrokenCRLKeepsPrevious(t *testing.T) {
	e := newCAEnv(t)
	a, other := newTestCA(t, "A"), newTestCA(t, "other")
	a.writeCert(t, e.caPath)
	a.writeCRL(t, e.crlPath, a, 7)
	ca := e.mustOpen()

	broken := map[string]func(){
		"garbage":       func() { writeAtomic(t, e.crlPath, []byte("not a CRL")) },
		"wrong signer":  func() { a.writeCRL(t, e.crlPath, other, 8) },
		"wrong PEM":     func() { writeAtomic(t, e.crlPath, []byte("-----BEGIN CRL-----\nAAAA\n-----END CRL-----\n")) },
		"truncated DER": func() { writeAtomic(t, e.crlPath, []byte("-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n")) },
	}
	for name, breakIt := range broken {
		before := e.reported()
		breakIt()
		e.tick()
		check(t, ca, a, 7, ErrRevoked) // previous CRL still in force
		check(t, ca, a, 8, nil)
		if got := e.reported() - before; got != 1 {
			t.Errorf("%s: %d errors reported, want 1", name, got)
		}
		// The same broken file is reported once, not on every check.
		e.tick()
		check(t, ca, a, 7, ErrRevoked)
		if got := e.reported() - before; got != 1 {
			t.Errorf("%s: %d errors reported after a second check, want 1", name, got)
		}
	}
	if err := ca.Reload(); err != nil {
		t.Errorf("Reload of unchanged files: %v", err)
	}
	a.writeCRL(t, e.crlPath, a, 8)
	if err := ca.Reload(); err != nil {
		t.Fatalf("Reload with fixed CRL: %v", err)
	}
	check(t, ca, a, 7, nil)
	check(t, ca, a, 8, ErrRevoked)
}

func TestCABrokenCRLWithoutPreviousRefusesAll(t *testing.T) {
	e := newCAEnv(t)
	a := newTestCA(t, "A")
	a.writeCert(t, e.caPath)
	ca := e.mustOpen()

	writeAtomic(t, e.crlPath, []byte("garbage"))
	e.tick()
	check(t, ca, a, 1, ErrCRLUnusable)
	if e.reported() != 1 {
		t.Errorf("%d errors reported, want 1", e.reported())
	}

	a.writeCRL(t, e.crlPath, a)
	e.tick()
	check(t, ca, a, 1, nil)
}

func TestCABrokenCAKeepsPrevious(t *testing.T) {
	e := newCAEnv(t)
	a := newTestCA(t, "A")
	a.writeCert(t, e.caPath)
	ca := e.mustOpen()

	writeAtomic(t, e.caPath, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	e.tick()
	check(t, ca, a, 1, nil)
	if e.reported() != 1 {
		t.Errorf("%d errors reported, want 1", e.reported())
	}
}

// A new CA re-validates the existing CRL; one signed by the old CA is
// reported and the revocations already in force are kept.
func TestCASwapRevalidatesCRL(t *testing.T) {
	e := newCAEnv(t)
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	a.writeCert(t, e.caPath)
	a.writeCRL(t, e.crlPath, a, 7)
	ca := e.mustOpen()

	b.writeCert(t, e.caPath)
	e.tick()
	check(t, ca, b, 7, ErrRevoked)
	check(t, ca, b, 8, nil)
	if e.reported() != 1 {
		t.Errorf("%d errors reported, want 1 (CRL not signed by the new CA)", e.reported())
	}

	b.writeCRL(t, e.crlPath, b, 8)
	e.tick()
	check(t, ca, b, 7, nil)
	check(t, ca, b, 8, ErrRevoked)
}

func TestNewCARefusesBrokenFiles(t *testing.T) {
	a, other := newTestCA(t, "A"), newTestCA(t, "other")
	cases := map[string]func(e *caEnv){
		"garbage CA": func(e *caEnv) { writeAtomic(t, e.caPath, []byte("junk")) },
		"leaf as CA": func(e *caEnv) {
			(&testCA{cert: issue(t, nil, leafOpts{})}).writeCert(t, e.caPath)
		},
		"garbage CRL": func(e *caEnv) {
			a.writeCert(t, e.caPath)
			writeAtomic(t, e.crlPath, []byte("junk"))
		},
		"CRL by other CA": func(e *caEnv) {
			a.writeCert(t, e.caPath)
			a.writeCRL(t, e.crlPath, other, 1)
		},
	}
	for name, setup := range cases {
		e := newCAEnv(t)
		setup(e)
		if _, err := e.open(); err == nil {
			t.Errorf("%s: NewCA succeeded, want error", name)
		}
	}
}

// Requests race with CA swaps by rename; run with -race. Since a rename
// is atomic, no request may ever see a missing or half-read CA.
func TestCAConcurrentReload(t *testing.T) {
	e := newCAEnv(t)
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	a.writeCert(t, e.caPath)
	ca := e.mustOpen()
	leafA, leafB := issue(t, a, leafOpts{}), issue(t, b, leafOpts{})

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.tick()
				for _, leaf := range []*x509.Certificate{leafA, leafB} {
					if err := ca.Verify(leaf); err != nil && !errors.Is(err, ErrUntrusted) {
						t.Errorf("Verify during swap: %v", err)
						return
					}
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		if i%2 == 0 {
			b.writeCert(t, e.caPath)
		} else {
			a.writeCert(t, e.caPath)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()

	if n := e.reported(); n != 0 {
		t.Errorf("%d reload errors during atomic swaps: %v", n, e.errs)
	}
	e.tick()
	expectVerify(t, leafA, ca.Verify(leafA), nil)
	expectVerify(t, leafB, ca.Verify(leafB), ErrUntrusted)
}

// BenchmarkCAVerify is the per-request cost of PKI mode with a CRL
// loaded, including the amortised reload check.
func BenchmarkCAVerify(b *testing.B) {
	dir := b.TempDir()
	caPath, crlPath := filepath.Join(dir, "server.ca"), filepath.Join(dir, "ca.crl")
	a := newTestCA(b, "A")
	a.writeCert(b, caPath)
	a.writeCRL(b, crlPath, a, 1, 2, 3)
	ca, err := NewCA(caPath, crlPath, WithClock(func() time.Time { return t0 }))
	if err != nil {
		b.Fatal(err)
	}
	leaf := issue(b, a, leafOpts{serial: 4})
	for b.Loop() {
		if err := ca.Verify(leaf); err != nil {
			b.Fatal(err)
		}
	}
}
