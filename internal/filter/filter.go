// Package filter evaluates the ?filter= expressions of LXD's list
// endpoints (instances, images) against the API objects a list returns.
//
// The language is LXD's small OData subset:
//
//	[not] FIELD eq|ne VALUE {and|or [not] FIELD eq|ne VALUE}
//
// FIELD is a dotted path through the object's JSON form (name,
// config.image.os, expanded_devices.root.pool, properties.os). VALUE is a
// bare word or a '…' or "…" quoted string that may hold spaces. Keywords
// are case-insensitive. As in LXD, there is no precedence between and and
// or: clauses combine strictly left to right, and not applies to the one
// clause that follows it. A string field matches VALUE as a
// case-insensitive regular expression anchored at both ends (unless VALUE
// itself contains ^ or $), and as a case-insensitive literal if VALUE is
// not a valid expression: lxc sends its own key=value filters this way
// and filters the answer again, so the server must never return less than
// LXD would.
package filter

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"github.com/moat/moat/internal/errdefs"
)

// Filter is a parsed filter expression. A nil *Filter matches everything.
type Filter struct {
	clauses []clause
}

type clause struct {
	or    bool // joined to what precedes it with or rather than and
	not   bool
	field string
	ne    bool // operator ne rather than eq
	value string
	re    *regexp.Regexp // nil when value is not a valid expression
}

func (c clause) String() string {
	s := c.field + " eq " + c.value
	if c.ne {
		s = c.field + " ne " + c.value
	}
	if c.not {
		s = "not " + s
	}
	return s
}

func invalid(format string, args ...any) error {
	return errdefs.Invalidf("invalid filter: "+format, args...)
}

// token is one word of the expression; quoted tokens are values only.
type token struct {
	text   string
	quoted bool
}

func tokenize(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case isSpace(c):
			i++
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, invalid("unterminated quote in %s", s[i:])
			}
			j := i + 1 + end + 1
			if j < len(s) && !isSpace(s[j]) {
				return nil, invalid("text after the closing quote of %s", s[i:j])
			}
			out = append(out, token{text: s[i+1 : j-1], quoted: true})
			i = j
		default:
			j := i
			for j < len(s) && !isSpace(s[j]) {
				j++
			}
			out = append(out, token{text: s[i:j]})
			i = j
		}
	}
	return out, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isKeyword(t token, kw string) bool { return !t.quoted && strings.EqualFold(t.text, kw) }

// MaxLength bounds an expression: every clause compiles a regular
// expression, and no client needs more than a few clauses.
const MaxLength = 4096

// Parse reads a filter expression; an empty one gives a nil Filter. Every
// error is an errdefs.ErrInvalid whose text starts with "invalid filter:".
func Parse(s string) (*Filter, error) {
	if len(s) > MaxLength {
		return nil, invalid("%d bytes, more than the %d allowed", len(s), MaxLength)
	}
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, nil
	}
	f := &Filter{}
	for i := 0; i < len(toks); {
		var c clause
		if len(f.clauses) > 0 {
			switch {
			case isKeyword(toks[i], "and"):
			case isKeyword(toks[i], "or"):
				c.or = true
			default:
				return nil, invalid("expected and or or after %q, got %q", f.clauses[len(f.clauses)-1].String(), toks[i].text)
			}
			i++
			if i == len(toks) {
				return nil, invalid("%q at the end needs a clause after it", toks[i-1].text)
			}
		}
		for i < len(toks) && isKeyword(toks[i], "not") {
			c.not = !c.not
			i++
		}
		if i == len(toks) {
			return nil, invalid("not at the end needs a clause after it")
		}
		field := toks[i]
		if field.quoted || isKeyword(field, "and") || isKeyword(field, "or") {
			return nil, invalid("expected a field name, got %q", field.text)
		}
		c.field = field.text
		if i+1 == len(toks) {
			return nil, invalid("clause %q has no operator", c.field)
		}
		op := toks[i+1]
		switch {
		case isKeyword(op, "eq"):
		case isKeyword(op, "ne"):
			c.ne = true
		default:
			return nil, invalid("unknown operator %q after %q (use eq or ne)", op.text, c.field)
		}
		if i+2 == len(toks) {
			return nil, invalid("clause %q has no value", c.field+" "+op.text)
		}
		c.value = toks[i+2].text
		c.re = compile(c.value)
		f.clauses = append(f.clauses, c)
		i += 3
	}
	return f, nil
}

// compile turns a value into the expression string fields are matched
// with; nil if it is not one (then it is compared literally).
func compile(v string) *regexp.Regexp {
	if !strings.ContainsAny(v, "^$") {
		v = "^(?:" + v + ")$"
	}
	re, err := regexp.Compile("(?i)" + v)
	if err != nil {
		return nil
	}
	return re
}

// Match reports whether obj, an API object, satisfies the filter. obj is
// evaluated in its JSON form, so field names are the JSON ones. The error
// (a 400) names a field that is an object or a list, which has no value
// to compare.
func (f *Filter) Match(obj any) (bool, error) {
	if f == nil {
		return true, nil
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return false, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return false, err
	}
	result := true
	for i, c := range f.clauses {
		m, err := c.match(doc)
		if err != nil {
			return false, err
		}
		switch {
		case i == 0:
			result = m
		case c.or:
			result = result || m
		default:
			result = result && m
		}
	}
	return result, nil
}

func (c clause) match(doc any) (bool, error) {
	v, _ := lookup(doc, c.field)
	var eq bool
	switch x := v.(type) {
	case nil: // absent or null: the empty string, as an unset config key
		eq = c.equalString("")
	case string:
		eq = c.equalString(x)
	case bool:
		b, err := strconv.ParseBool(c.value)
		eq = err == nil && b == x
	case json.Number:
		eq = equalNumber(x, c.value)
	case map[string]any:
		return false, invalid("field %q is an object, not a value: name one of its keys", c.field)
	default:
		return false, invalid("field %q is a list, not a value", c.field)
	}
	return eq != c.ne != c.not, nil
}

func (c clause) equalString(s string) bool {
	if c.re != nil {
		return c.re.MatchString(s)
	}
	return strings.EqualFold(s, c.value)
}

func equalNumber(n json.Number, v string) bool {
	if a, err := n.Int64(); err == nil {
		b, err := strconv.ParseInt(v, 10, 64)
		return err == nil && a == b
	}
	a, err1 := n.Float64()
	b, err2 := strconv.ParseFloat(v, 64)
	return err1 == nil && err2 == nil && a == b
}

// lookup follows a dotted path. Keys may themselves contain dots (config
// keys do), so at each level the longest prefix of the rest of the path
// that is a key wins.
func lookup(doc any, path string) (any, bool) {
	v := doc
	for path != "" {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if x, ok := m[path]; ok {
			return x, true
		}
		found := false
		for i := strings.LastIndexByte(path, '.'); i > 0; i = strings.LastIndexByte(path[:i], '.') {
			if x, ok := m[path[:i]]; ok {
				v, path, found = x, path[i+1:], true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return v, true
}
