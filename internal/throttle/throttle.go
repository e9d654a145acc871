// Package throttle slows down brute force against authentication: failed
// token redemptions, trust-password attempts and rejected client
// certificates, counted per source address.
//
// Each source gets a token bucket of Burst failures that refills one
// failure every Interval. It is implemented as GCRA: per source we keep a
// single "theoretical arrival time" (tat) instead of a counter and a
// timestamp, and the bucket is full again once tat is in the past. With the
// defaults (5 and 10s) a source can fail 5 times in a row and is then held
// to 6 attempts a minute, under 9000 a day: harmless for a 256-bit token
// secret and slow enough to make guessing a trust password impractical,
// while a user who mistypes a few times is never locked out for more than
// 10 seconds.
//
// IPv6 sources are grouped by /64, the smallest prefix routinely assigned
// to one host or LAN, so a single machine cannot get a fresh bucket per
// address. The table is capped at MaxEntries; when full, the least
// recently failing source is forgotten. An attacker rotating through
// prefixes can therefore only evict old entries (which is no better than
// using yet another fresh prefix) and cannot grow memory.
package throttle

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Defaults used by New for zero Config fields.
const (
	DefaultBurst      = 5
	DefaultInterval   = 10 * time.Second
	DefaultMaxEntries = 16384
)

// Config tunes a Limiter. Zero fields take the defaults.
type Config struct {
	Burst      int              // failures allowed back to back
	Interval   time.Duration    // time to regain one failure
	MaxEntries int              // maximum number of tracked sources
	Now        func() time.Time // clock, for tests
}

// Limiter tracks authentication failures per source. It is safe for
// concurrent use.
type Limiter struct {
	burst    time.Duration // Burst * Interval
	interval time.Duration
	max      int
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // of *entry
	lru     list.List                // most recently failed at the front
}

type entry struct {
	key string
	tat time.Time // bucket is full at and after tat
}

// New returns a Limiter configured by c.
func New(c Config) *Limiter {
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Limiter{
		burst:    time.Duration(c.Burst) * c.Interval,
		interval: c.Interval,
		max:      c.MaxEntries,
		now:      c.Now,
		entries:  make(map[string]*list.Element),
	}
}

// Allow reports whether an authentication attempt from addr may proceed.
// When it may not, retryAfter is how long the source has to wait (suitable
// for a Retry-After header). Allow never creates state, so probing it
// costs an attacker nothing and costs us no memory.
func (l *Limiter) Allow(addr string) (ok bool, retryAfter time.Duration) {
	key := Key(addr)
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	el, found := l.entries[key]
	if !found {
		return true, 0
	}
	e := el.Value.(*entry)
	// Another failure is allowed if adding one more interval stays within
	// the burst window.
	wait := e.tat.Add(l.interval).Sub(now) - l.burst
	if wait > 0 {
		return false, wait
	}
	if !e.tat.After(now) {
		// Fully refilled: the entry carries no information any more.
		l.remove(el)
	}
	return true, 0
}

// Fail records a failed authentication from addr.
func (l *Limiter) Fail(addr string) {
	key := Key(addr)
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	el, found := l.entries[key]
	if !found {
		if l.lru.Len() >= l.max {
			l.remove(l.lru.Back())
		}
		el = l.lru.PushFront(&entry{key: key, tat: now})
		l.entries[key] = el
	} else {
		l.lru.MoveToFront(el)
	}
	e := el.Value.(*entry)
	if e.tat.Before(now) {
		e.tat = now
	}
	// Failures reported while blocked do not extend the penalty beyond one
	// full burst, so a source sharing a NAT with an attacker can get in
	// again at most Burst*Interval after the attack stops.
	e.tat = e.tat.Add(l.interval)
	if limit := now.Add(l.burst); e.tat.After(limit) {
		e.tat = limit
	}
}

// Success records a successful authentication from addr and forgets its
// failures: having proven a credential, the source has nothing left to
// guess.
func (l *Limiter) Success(addr string) {
	key := Key(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, found := l.entries[key]; found {
		l.remove(el)
	}
}

// Len returns the number of tracked sources.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

func (l *Limiter) remove(el *list.Element) {
	l.lru.Remove(el)
	delete(l.entries, el.Value.(*entry).key)
}

// Key returns the bucket key for a source address: "ip:port" or a bare IP
// (as in http.Request.RemoteAddr). IPv4 and IPv4-mapped IPv6 addresses
// map to the IPv4 address, other IPv6 addresses to their /64 prefix.
// Anything else, such as a unix socket peer, is used verbatim.
func Key(addr string) string {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		ip = ap.Addr()
	} else if a, err := netip.ParseAddr(addr); err == nil {
		ip = a
	} else {
		return addr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}
