package filter

import (
	"errors"
	"strings"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/errdefs"
)

var c1 = api.Instance{
	InstancePut: api.InstancePut{
		Architecture: "x86_64",
		Config:       map[string]string{"image.os": "BusyBox", "user.note": "two words"},
		Profiles:     []string{"default"},
	},
	ExpandedConfig:  map[string]string{"image.os": "BusyBox", "limits.cpu": "2"},
	ExpandedDevices: map[string]map[string]string{"root": {"path": "/", "pool": "default", "type": "disk"}},
	Name:            "c1", Status: "Running", StatusCode: api.Running, Project: "default",
}

func match(t *testing.T, expr string, obj any) bool {
	t.Helper()
	f, err := Parse(expr)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	ok, err := f.Match(obj)
	if err != nil {
		t.Fatalf("Match(%q): %v", expr, err)
	}
	return ok
}

func TestMatchInstance(t *testing.T) {
	cases := map[string]bool{
		"":                                      true,
		"name eq c1":                            true,
		"name eq c2":                            false,
		"name ne c2":                            true,
		"NAME eq c1":                            false, // field names are the JSON ones
		"name EQ c1":                            true,  // keywords are case-insensitive
		"status eq running":                     true,  // lxc sends status=running as is
		"status_code eq 103":                    true,
		"status_code eq 102":                    false,
		"status_code eq Running":                false,
		"architecture eq x86_64":                true,
		"config.image.os eq busybox":            true,
		"expanded_config.limits.cpu eq 2":       true,
		"config.limits.cpu eq 2":                false,
		"config.limits.cpu eq ''":               true, // an unset key is empty
		"expanded_devices.root.pool eq default": true,
		"expanded_devices.root.path eq /":       true,
		"config.user.note eq 'two words'":       true,
		`config.user.note eq "two words"`:       true,
		"config.user.note eq two":               false,
		"ephemeral eq false":                    true,
		"ephemeral eq true":                     false,
		"no.such.field eq x":                    false,
		"no.such.field ne x":                    true,
		// Values are anchored case-insensitive expressions, as in LXD.
		"name eq c.":     true,
		"name eq c":      false,
		"name eq ^c":     true,
		"name eq C[0-9]": true,
		"name eq c1(":    false, // not an expression: compared literally
	}
	for expr, want := range cases {
		if got := match(t, expr, c1); got != want {
			t.Errorf("%q on c1 = %v, want %v", expr, got, want)
		}
	}
}

func TestLiteralWhenNotAnExpression(t *testing.T) {
	obj := map[string]string{"description": "a(b"}
	if !match(t, "description eq A(B", obj) {
		t.Error("an invalid expression is not compared as a case-insensitive literal")
	}
}

// TestPrecedence pins LXD's evaluation order: not binds to one clause,
// and/or have no precedence over each other and apply left to right.
func TestPrecedence(t *testing.T) {
	cases := map[string]bool{
		"not name eq c1":                                 false,
		"not name eq c2":                                 true,
		"not not name eq c1":                             true,
		"not name eq c2 and status eq Stopped":           false, // (not a) and b
		"name eq c1 or name eq c2 and status eq Stopped": false, // (a or b) and c, not a or (b and c)
		"status eq Stopped and name eq c2 or name eq c1": true,  // (a and b) or c
		"name eq c2 or not status eq Stopped":            true,
		"name eq c1 and not config.image.os eq busybox":  false,
	}
	for expr, want := range cases {
		if got := match(t, expr, c1); got != want {
			t.Errorf("%q on c1 = %v, want %v", expr, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"name":                      "has no operator",
		"name eq":                   "has no value",
		"not":                       "needs a clause",
		"name eq c1 and":            "needs a clause",
		"name eq c1 or not":         "needs a clause",
		"name gt 1":                 `unknown operator "gt"`,
		"name like c%":              `unknown operator "like"`,
		"name eq 'c1":               "unterminated quote",
		`name eq "c1`:               "unterminated quote",
		"name eq 'c1'x":             "after the closing quote",
		"name eq c1 c2":             `expected and or or after "name eq c1", got "c2"`,
		"name eq c1 xor name eq c2": `got "xor"`,
		"and name eq c1":            `expected a field name, got "and"`,
		"'name' eq c1":              `expected a field name, got "name"`,
		strings.Repeat("name eq c1 or ", 300) + "name eq c1": "more than the 4096 allowed",
	}
	for expr, want := range cases {
		f, err := Parse(expr)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", expr, f)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid filter: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) error = %q (invalid: %v), want one containing %q", expr, err, errors.Is(err, errdefs.ErrInvalid), want)
		}
	}
}

func TestQuotedValues(t *testing.T) {
	obj := map[string]any{"description": `it's "x"  y`, "empty": ""}
	cases := map[string]bool{
		`description eq "it's "`: false,
		`empty eq ''`:            true,
		`empty eq ""`:            true,
		`empty ne ''`:            false,
	}
	for expr, want := range cases {
		if got := match(t, expr, obj); got != want {
			t.Errorf("%q = %v, want %v", expr, got, want)
		}
	}
	// There are no escapes inside quotes: a quote ends the value.
	for _, expr := range []string{`description eq "it's \"x\"  y"`, `description eq 'it''s'`} {
		if _, err := Parse(expr); err == nil {
			t.Errorf("Parse(%q) accepted an escaped or doubled quote", expr)
		}
	}
	// Quoted text keeps inner spaces exactly and may hold the other quote.
	if !match(t, `description eq 'it.s "x"  y'`, obj) {
		t.Error(`single quotes around a value with double quotes and two spaces do not match`)
	}
	if match(t, `description eq 'it.s "x" y'`, obj) {
		t.Error("inner whitespace is collapsed")
	}
}

func TestObjectFieldIsAnError(t *testing.T) {
	for _, expr := range []string{"config eq x", "expanded_devices.root eq x", "profiles eq default"} {
		f, err := Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Match(c1); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "not a value") {
			t.Errorf("%q: error = %v, want a 400 saying the field is not a value", expr, err)
		}
	}
}

func TestImageFields(t *testing.T) {
	img := api.Image{ImagePut: api.ImagePut{Public: true, Properties: map[string]string{"os": "Ubuntu", "release": "22.04"}},
		Architecture: "x86_64", Fingerprint: "abc123", Size: 4096}
	cases := map[string]bool{
		"properties.os eq ubuntu":                            true,
		"properties.release eq 22.04":                        true,
		"public eq true and architecture eq x86_64":          true,
		"size eq 4096":                                       true,
		"size eq 4097":                                       false,
		"not public eq true or properties.os eq debian":      false,
		"properties.os eq debian or properties.os eq ubuntu": true,
	}
	for expr, want := range cases {
		if got := match(t, expr, img); got != want {
			t.Errorf("%q on image = %v, want %v", expr, got, want)
		}
	}
}

func TestNilFilterMatchesAll(t *testing.T) {
	f, err := Parse("  \t ")
	if err != nil || f != nil {
		t.Fatalf("blank filter = %v, %v; want nil, nil", f, err)
	}
	if ok, err := f.Match(c1); !ok || err != nil {
		t.Fatalf("nil filter Match = %v, %v", ok, err)
	}
}
