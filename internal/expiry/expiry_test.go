package expiry

import (
	"strings"
	"testing"
	"time"
)

var base = time.Date(2026, time.January, 31, 10, 0, 0, 0, time.UTC)

func TestParseFrom(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"   ", time.Time{}},
		{"15M", base.Add(15 * time.Minute)},
		{"30S", base.Add(30 * time.Second)},
		{"3H", base.Add(3 * time.Hour)},
		{"15d", base.AddDate(0, 0, 15)},
		{"2w", base.AddDate(0, 0, 14)},
		{"1y", base.AddDate(1, 0, 0)},
		{"10y", base.AddDate(10, 0, 0)},
		// Calendar month: Jan 31 + 1 month normalises to Mar 3 in 2026.
		{"1m", time.Date(2026, time.March, 3, 10, 0, 0, 0, time.UTC)},
		{"1d 12H", base.Add(36 * time.Hour)},
		{"1y 2m 3w 4d 5H 6M 7S", base.AddDate(1, 2, 25).Add(5*time.Hour + 6*time.Minute + 7*time.Second)},
		{"0S", base},
		{"  2H   1M ", base.Add(2*time.Hour + time.Minute)},
		{"007M", base.Add(7 * time.Minute)},
	}
	for _, tt := range tests {
		e, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := e.From(base); !got.Equal(tt.want) {
			t.Errorf("Parse(%q).From(base) = %v, want %v", tt.in, got, tt.want)
		}
		if e.IsZero() != (strings.TrimSpace(tt.in) == "") {
			t.Errorf("Parse(%q).IsZero() = %v", tt.in, e.IsZero())
		}
	}
}

// A day is a calendar day, not 24 hours, so expiries keep the wall-clock
// time across a DST change.
func TestDayIsCalendarDay(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	start := time.Date(2026, time.March, 28, 12, 0, 0, 0, loc) // DST starts Mar 29
	e, err := Parse("1d")
	if err != nil {
		t.Fatal(err)
	}
	got := e.From(start)
	if got.Hour() != 12 || got.Day() != 29 {
		t.Errorf("1d from %v = %v, want 12:00 on the 29th", start, got)
	}
	if got.Sub(start) != 23*time.Hour {
		t.Errorf("1d across DST = %v, want 23h", got.Sub(start))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in      string
		badTerm string
	}{
		{"-5d", "-5d"},
		{"+5d", "+5d"},
		{"5", "5"},
		{"d", "d"},
		{"5x", "5x"},
		{"5D", "5D"},
		{"5s", "5s"},
		{"1d 2d", "2d"},
		{"1M 2H 3M", "3M"},
		{"1.5H", "1.5H"},
		{"0x10S", "0x10S"},
		{"1d,2H", "1d,2H"},
		{"99999999999999999999S", "99999999999999999999S"},
		{"9223372036854775807H", "9223372036854775807H"},
		{"2562047H 60M", "60M"}, // each term fits, the sum overflows time.Duration
		{"10001y", "10001y"},
		{"99999999m", "99999999m"},
		{"1d 5Y", "5Y"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q): want error", tt.in)
			continue
		}
		if !strings.Contains(err.Error(), `"`+tt.badTerm+`"`) {
			t.Errorf("Parse(%q) error %q does not name term %q", tt.in, err, tt.badTerm)
		}
		if Validate(tt.in) == nil {
			t.Errorf("Validate(%q) = nil, want error", tt.in)
		}
	}
}

func TestFromNoExpiryIsZeroTime(t *testing.T) {
	var e Expiry
	if got := e.From(base); !got.IsZero() {
		t.Errorf("zero Expiry.From = %v, want zero time", got)
	}
	if got := e.From(base).UTC().Format(time.RFC3339); got != "0001-01-01T00:00:00Z" {
		t.Errorf("zero expiry renders as %q", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "15M", "1y 2m 3w 4d 5H 6M 7S", "-1d", "1d 1d", "9223372036854775807S", "10000y 120000m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			if !e.IsZero() {
				t.Fatalf("Parse(%q) returned error and a non-zero Expiry", s)
			}
			return
		}
		got := e.From(base)
		if e.IsZero() {
			if !got.IsZero() {
				t.Fatalf("Parse(%q): no expiry but From = %v", s, got)
			}
			return
		}
		// Every accepted term is non-negative, so an expiry never lies in the past.
		if got.Before(base) {
			t.Fatalf("Parse(%q).From(base) = %v is before base", s, got)
		}
	})
}
