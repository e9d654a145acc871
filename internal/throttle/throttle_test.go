package throttle

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTest(max int) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return New(Config{MaxEntries: max, Now: c.now}), c
}

func mustAllow(t *testing.T, l *Limiter, addr string) {
	t.Helper()
	if ok, retry := l.Allow(addr); !ok {
		t.Fatalf("Allow(%s) = false (retry %v), want true", addr, retry)
	}
}

func mustDeny(t *testing.T, l *Limiter, addr string, wantRetry time.Duration) {
	t.Helper()
	ok, retry := l.Allow(addr)
	if ok {
		t.Fatalf("Allow(%s) = true, want false", addr)
	}
	if retry != wantRetry {
		t.Fatalf("Allow(%s) retryAfter = %v, want %v", addr, retry, wantRetry)
	}
}

func TestBurstThenRefill(t *testing.T) {
	l, c := newTest(0)
	const a = "192.0.2.1:4000"
	for i := 0; i < DefaultBurst; i++ {
		mustAllow(t, l, a)
		l.Fail(a)
	}
	mustDeny(t, l, a, DefaultInterval)

	c.advance(4 * time.Second)
	mustDeny(t, l, a, 6*time.Second)

	c.advance(6 * time.Second)
	mustAllow(t, l, a)
	l.Fail(a)
	mustDeny(t, l, a, DefaultInterval)

	// After a full burst worth of quiet time the source is forgotten.
	c.advance(DefaultBurst * DefaultInterval)
	mustAllow(t, l, a)
	if n := l.Len(); n != 0 {
		t.Errorf("Len after refill = %d, want 0", n)
	}
}

func TestFailuresWhileBlockedAreCapped(t *testing.T) {
	l, c := newTest(0)
	const a = "192.0.2.1"
	for i := 0; i < 100; i++ {
		l.Fail(a)
	}
	mustDeny(t, l, a, DefaultInterval)
	c.advance(DefaultInterval)
	mustAllow(t, l, a)
}

func TestSuccessResets(t *testing.T) {
	l, _ := newTest(0)
	const a = "192.0.2.7:1"
	for i := 0; i < DefaultBurst; i++ {
		l.Fail(a)
	}
	mustDeny(t, l, a, DefaultInterval)
	l.Success(a)
	mustAllow(t, l, a)
}

func TestSourcesAreIndependent(t *testing.T) {
	l, _ := newTest(0)
	for i := 0; i < DefaultBurst; i++ {
		l.Fail("192.0.2.1:1")
	}
	mustDeny(t, l, "192.0.2.1:2", DefaultInterval) // same IP, other port
	mustAllow(t, l, "192.0.2.2:1")
}

func TestIPv6GroupedBy64(t *testing.T) {
	l, _ := newTest(0)
	for i := 0; i < DefaultBurst; i++ {
		l.Fail(fmt.Sprintf("[2001:db8:1:2::%x]:8443", i+1))
	}
	mustDeny(t, l, "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", DefaultInterval)
	mustDeny(t, l, "2001:db8:1:2::99", DefaultInterval)
	mustAllow(t, l, "[2001:db8:1:3::1]:1")
}

func TestKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.1:8443":               "192.0.2.1",
		"192.0.2.1":                    "192.0.2.1",
		"[::ffff:192.0.2.1]:8443":      "192.0.2.1",
		"[2001:db8::1%eth0]:1":         "2001:db8::/64",
		"2001:db8:0:0:abcd::1":         "2001:db8::/64",
		"[fe80::1:2:3:4%lo]:9":         "fe80::/64",
		"@":                            "@",
		"not an address":               "not an address",
		"[2001:db8:aaaa:bbbb:1::]:443": "2001:db8:aaaa:bbbb::/64",
	}
	for in, want := range tests {
		if got := Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAllowDoesNotCreateState(t *testing.T) {
	l, _ := newTest(0)
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprintf("10.0.%d.%d:1", i/256, i%256))
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len = %d after Allow only, want 0", n)
	}
}

func TestBoundedMemoryEvictsLeastRecent(t *testing.T) {
	const max = 100
	l, _ := newTest(max)
	const victim = "198.51.100.1"
	for i := 0; i < DefaultBurst; i++ {
		l.Fail(victim)
	}
	// An attacker rotating through IPv6 prefixes.
	for i := 0; i < 10*max; i++ {
		l.Fail(fmt.Sprintf("[2001:db8:%x:%x::1]:1", i>>16, i&0xffff))
		if n := l.Len(); n > max {
			t.Fatalf("Len = %d, exceeds MaxEntries %d", n, max)
		}
	}
	if n := l.Len(); n != max {
		t.Errorf("Len = %d, want %d", n, max)
	}
	// The oldest entry was evicted; the most recent attacker prefix is still tracked.
	mustAllow(t, l, victim)
	if _, tracked := l.entries[Key(fmt.Sprintf("[2001:db8:0:%x::1]:1", 10*max-1))]; !tracked {
		t.Error("most recent source was evicted")
	}
}

func TestFailRefreshesRecency(t *testing.T) {
	l, _ := newTest(3)
	l.Fail("192.0.2.1")
	l.Fail("192.0.2.2")
	l.Fail("192.0.2.3")
	l.Fail("192.0.2.1") // now most recent; .2 is the eviction candidate
	l.Fail("192.0.2.4")
	if _, ok := l.entries["192.0.2.1"]; !ok {
		t.Error("recently failing source evicted")
	}
	if _, ok := l.entries["192.0.2.2"]; ok {
		t.Error("least recent source still tracked")
	}
}

func TestConcurrentUse(t *testing.T) {
	l := New(Config{MaxEntries: 64})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				a := fmt.Sprintf("10.%d.0.%d", g, i%128)
				l.Allow(a)
				l.Fail(a)
				if i%7 == 0 {
					l.Success(a)
				}
			}
		}()
	}
	wg.Wait()
	if n := l.Len(); n > 64 {
		t.Errorf("Len = %d > 64", n)
	}
}

func BenchmarkFailAllow(b *testing.B) {
	l := New(Config{})
	addrs := make([]string, 4096)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("[2001:db8:%x::1]:443", i)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			a := addrs[i%len(addrs)]
			l.Allow(a)
			l.Fail(a)
			i++
		}
	})
}
