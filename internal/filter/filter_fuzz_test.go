package filter

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/moat/moat/internal/errdefs"
)

// refusal fails t unless err is the package's 400.
func refusal(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid filter: ") {
		t.Fatalf("refusal %q is not an ErrInvalid starting with \"invalid filter: \"", err)
	}
}

// FuzzParse: every refusal is the package's 400; anything longer than
// MaxLength is refused; an accepted filter evaluates on any JSON object
// without panicking, failing only with a 400, and gives the same answers
// with extra surrounding whitespace; "not" in front of a one-clause
// filter inverts its answer.
func FuzzParse(f *testing.F) {
	inst, err := json.Marshal(c1)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct{ expr, obj string }{
		{"name eq c1", string(inst)},
		{"NAME eq c1", string(inst)},
		{"status_code eq 103 and config.image.os eq busybox", string(inst)},
		{"expanded_devices.root.pool eq default or name ne x", string(inst)},
		{"not not name eq 'c1'", string(inst)},
		{`config.user.note eq "two words"`, string(inst)},
		{"config eq x", string(inst)},
		{"profiles eq default", string(inst)},
		{"name eq c1(", `{"name":"c1("}`},
		{"name eq ^c.*$", `{"name":"C1"}`},
		{"size eq 4096", `{"size":4096}`},
		{"size eq 1e3", `{"size":1000.0}`},
		{"public eq true", `{"public":true}`},
		{"a.b.c eq x", `{"a.b":{"c":"x"},"a":{"b.c":"y"}}`},
		{"a eq ''", `{"a":null}`},
		{"x eq y", `[1,2,3]`},
		{"x eq y", `"just a string"`},
		{"x eq y", `not json`},
		{"", `{}`},
		{"name", `{}`},
		{"name eq", `{}`},
		{"name eq c1 and", `{}`},
		{"name gt 1", `{}`},
		{"name eq 'c1", `{}`},
		{"name eq 'c1'x", `{}`},
		{"and name eq c1", `{}`},
		{"'name' eq c1", `{}`},
		{"name eq (((a{1000}){1000}){1000})", `{"name":"a"}`},
		{"name eq \x00\xff", `{"name":"\u0000"}`},
		{strings.Repeat("name eq c1 or ", 300) + "name eq c1", string(inst)},
	} {
		f.Add(s.expr, []byte(s.obj))
	}
	f.Fuzz(func(t *testing.T, expr string, obj []byte) {
		// Padded beyond the bound, any expression is refused whatever it
		// holds; the padding is blanks, so this is about length alone.
		if _, err := Parse(expr + strings.Repeat(" ", MaxLength+1)); err == nil {
			t.Fatalf("an expression of more than %d bytes was accepted", MaxLength)
		} else {
			refusal(t, err)
		}
		flt, err := Parse(expr)
		if err != nil {
			refusal(t, err)
			return
		}
		if len(expr) > MaxLength {
			t.Fatalf("accepted %d bytes", len(expr))
		}
		var doc any
		if json.Unmarshal(obj, &doc) != nil {
			doc = map[string]any{"name": string(obj)}
		}
		got, err := flt.Match(doc)
		if err != nil {
			refusal(t, err)
		}
		if len(expr)+2 <= MaxLength {
			padded, perr := Parse("\t" + expr + "\n")
			if perr != nil {
				t.Fatalf("accepted %q but not with surrounding blanks: %v", expr, perr)
			}
			got2, err2 := padded.Match(doc)
			if got2 != got || (err == nil) != (err2 == nil) {
				t.Fatalf("%q: %v, %v; with blanks around it %v, %v", expr, got, err, got2, err2)
			}
		}
		if flt != nil && len(flt.clauses) == 1 && len(expr)+4 <= MaxLength && err == nil {
			neg, perr := Parse("not " + expr)
			if perr != nil {
				t.Fatalf("accepted %q but not %q: %v", expr, "not "+expr, perr)
			}
			if inv, err := neg.Match(doc); err != nil || inv == got {
				t.Fatalf("%q = %v, not %q = %v, %v", expr, got, "not "+expr, inv, err)
			}
		}
	})
}
