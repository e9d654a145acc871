// Package expiry parses the relative expiry grammar used by LXD-compatible
// configuration keys such as core.remote_token_expiry.
//
// An expiry is a space-separated list of <int><unit> terms, for example
// "1d 12H" or "15M". Units are S (second), M (minute), H (hour), d (day),
// w (week), m (month) and y (year); each unit may appear at most once and
// units are case-sensitive (M is minutes, m is months). The empty string
// means "never expires".
package expiry

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Expiry is a parsed expiry. The zero value means "no expiry".
type Expiry struct {
	set bool // false for the empty expression

	// Calendar parts are applied with time.AddDate so that "1m" from
	// January 31st lands where Go's calendar arithmetic puts it and "1d"
	// is a calendar day across DST changes, not 24 hours.
	years, months, days int

	// Clock parts are exact durations.
	clock time.Duration
}

// Bounds keep AddDate far away from int and time overflow. Ten thousand
// years is more than any credential lifetime anyone should configure.
const maxYears = 10000

var calendarMax = map[byte]int64{
	'd': maxYears * 366,
	'w': maxYears * 53,
	'm': maxYears * 12,
	'y': maxYears,
}

var clockUnit = map[byte]time.Duration{
	'S': time.Second,
	'M': time.Minute,
	'H': time.Hour,
}

// Parse parses an expiry expression. Errors name the offending term.
func Parse(s string) (Expiry, error) {
	var e Expiry
	seen := make(map[byte]bool, 7)
	for _, term := range strings.Fields(s) {
		n, unit, err := splitTerm(term)
		if err != nil {
			return Expiry{}, err
		}
		if seen[unit] {
			return Expiry{}, fmt.Errorf("expiry term %q: unit %q used more than once", term, unit)
		}
		seen[unit] = true

		if d, ok := clockUnit[unit]; ok {
			if n > int64(math.MaxInt64/d) || e.clock > math.MaxInt64-time.Duration(n)*d {
				return Expiry{}, fmt.Errorf("expiry term %q: value too large", term)
			}
			e.clock += time.Duration(n) * d
			e.set = true
			continue
		}
		if n > calendarMax[unit] {
			return Expiry{}, fmt.Errorf("expiry term %q: value too large", term)
		}
		switch unit {
		case 'd':
			e.days += int(n)
		case 'w':
			e.days += int(n) * 7
		case 'm':
			e.months = int(n)
		case 'y':
			e.years = int(n)
		}
		e.set = true
	}
	return e, nil
}

// splitTerm splits "<digits><unit>" and rejects signs, spaces and unknown
// units. Only ASCII digits are accepted so "+5d" and "-5d" both fail.
func splitTerm(term string) (int64, byte, error) {
	if len(term) < 2 {
		return 0, 0, fmt.Errorf("expiry term %q: want <number><unit>", term)
	}
	unit := term[len(term)-1]
	if _, ok := clockUnit[unit]; !ok {
		if _, ok := calendarMax[unit]; !ok {
			return 0, 0, fmt.Errorf("expiry term %q: unknown unit (want one of S M H d w m y)", term)
		}
	}
	digits := term[:len(term)-1]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, 0, fmt.Errorf("expiry term %q: value must be a non-negative integer", term)
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("expiry term %q: value too large", term)
	}
	return n, unit, nil
}

// Validate reports whether s is a valid expiry expression. It has the
// shape the config schema expects from a value validator.
func Validate(s string) error {
	_, err := Parse(s)
	return err
}

// IsZero reports whether e is the empty expression, meaning no expiry.
func (e Expiry) IsZero() bool { return !e.set }

// From returns the instant at which something created at t expires. For
// the empty expression it returns the zero time.Time, which is also how
// the token wire format spells "no expiry".
func (e Expiry) From(t time.Time) time.Time {
	if !e.set {
		return time.Time{}
	}
	return t.AddDate(e.years, e.months, e.days).Add(e.clock)
}
