package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"unicode"
)

// Bool accepts the spellings LXD clients send for booleans.
func Bool(v string) error {
	if _, ok := ParseBool(v); !ok {
		return errors.New("must be a boolean (true or false)")
	}
	return nil
}

// ParseBool parses a boolean value; ok is false for anything else.
func ParseBool(v string) (value, ok bool) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, true
	case "false", "0", "no", "off", "":
		return false, true
	}
	return false, false
}

// IsTrue reports whether v is a true boolean.
func IsTrue(v string) bool {
	b, _ := ParseBool(v)
	return b
}

// OneOf accepts exactly one of the given values.
func OneOf(values ...string) func(string) error {
	return func(v string) error {
		for _, a := range values {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(values, ", "))
	}
}

// Uint accepts a non-negative decimal integer no greater than max.
func Uint(max uint64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errors.New("must be a non-negative integer")
		}
		if n > max {
			return fmt.Errorf("must be at most %d", max)
		}
		return nil
	}
}

// ListenAddress accepts the forms of core.https_address: "host:port",
// "[v6]:port", "host" (port 8443 implied) and ":port" (all addresses).
func ListenAddress(v string) error {
	_, err := CanonicalListenAddress(v, 8443)
	return err
}

// CanonicalListenAddress returns v as host:port, adding defaultPort when v
// names only a host.
func CanonicalListenAddress(v string, defaultPort int) (string, error) {
	if strings.ContainsFunc(v, unicode.IsSpace) {
		return "", errors.New("must not contain spaces")
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		// A bare host or IP (an IPv6 literal may come with or without brackets).
		host = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
		port = strconv.Itoa(defaultPort)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return "", fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

var byteUnits = map[string]uint64{
	"": 1, "B": 1,
	"kB": 1000, "MB": 1000 * 1000, "GB": 1000 * 1000 * 1000, "TB": 1000 * 1000 * 1000 * 1000,
	"PB": 1000 * 1000 * 1000 * 1000 * 1000, "EB": 1000 * 1000 * 1000 * 1000 * 1000 * 1000,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50, "EiB": 1 << 60,
}

// MaxByteSize is the largest size ParseByteSize accepts: every consumer
// (the kernel's memory limit, the driver, project limits and usage) takes
// a size as a signed 64-bit number, so a larger one would turn negative
// after the config was stored.
const MaxByteSize = math.MaxInt64

// ParseByteSize parses a size such as "512MiB", "1GB" or "4096", at most
// MaxByteSize.
func ParseByteSize(v string) (uint64, error) {
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], v[i:]
	}
	if num == "" {
		return 0, errors.New("must start with a number")
	}
	mult, ok := byteUnits[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)", unit)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, errors.New("number out of range")
	}
	if n != 0 && mult > MaxByteSize/n {
		return 0, fmt.Errorf("must be at most %d bytes (8EiB - 1)", uint64(MaxByteSize))
	}
	return n * mult, nil
}

// ByteSize accepts a size accepted by ParseByteSize.
func ByteSize(v string) error {
	_, err := ParseByteSize(v)
	return err
}

// CommaList accepts a comma-separated list whose every element passes each.
func CommaList(each func(string) error) func(string) error {
	return func(v string) error {
		for _, e := range strings.Split(v, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				return errors.New("empty element in list")
			}
			if err := each(e); err != nil {
				return fmt.Errorf("%q: %w", e, err)
			}
		}
		return nil
	}
}

// AbsPath accepts an absolute, clean path.
func AbsPath(v string) error {
	if !strings.HasPrefix(v, "/") {
		return errors.New("must be an absolute path")
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return errors.New("must not contain ..")
		}
	}
	return nil
}

// IDRange accepts an id or an inclusive id range "a-b".
func IDRange(v string) error {
	lo, hi, found := strings.Cut(v, "-")
	a, err := strconv.ParseUint(lo, 10, 32)
	if err != nil {
		return errors.New("must be an id or an id range a-b")
	}
	if !found {
		return nil
	}
	b, err := strconv.ParseUint(hi, 10, 32)
	if err != nil || b < a {
		return errors.New("must be an id or an id range a-b with a <= b")
	}
	return nil
}

// Name accepts the names of objects Moat stores (projects, profiles, ...):
// 1 to 63 characters of letters, digits, '-', '_' and '.', not starting with
// '-' or '.', so a name never reads as a flag or a path.
func Name(v string) error {
	if v == "" {
		return errors.New("name must not be empty")
	}
	if len(v) > 63 {
		return errors.New("name must be at most 63 characters")
	}
	if v[0] == '-' || v[0] == '.' {
		return errors.New("name must not start with '-' or '.'")
	}
	for _, r := range v {
		if !(r == '-' || r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("name must not contain %q", r)
		}
	}
	return nil
}
