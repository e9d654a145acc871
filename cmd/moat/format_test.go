package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moat/moat/api"
)

func TestParsePairs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want map[string]string
		err  bool
	}{
		{args: []string{"k", "v"}, want: map[string]string{"k": "v"}},
		{args: []string{"k", "a=b"}, want: map[string]string{"k": "a=b"}},
		{args: []string{"k=v"}, want: map[string]string{"k": "v"}},
		{args: []string{"a=1", "b="}, want: map[string]string{"a": "1", "b": ""}},
		{args: []string{"a=1", "b"}, err: true},
		{args: []string{"=1"}, err: true},
		{args: []string{"k"}, err: true},
		{args: nil, err: true},
	} {
		got, err := parsePairs(tc.args)
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("parsePairs(%q) = %v, %v", tc.args, got, err)
		}
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := writeTable(&b, []string{"NAME", "X"}, [][]string{{"ab", "yés"}, {"a", ""}}); err != nil {
		t.Fatal(err)
	}
	want := `+------+-----+
| NAME | X   |
+------+-----+
| ab   | yés |
+------+-----+
| a    |     |
+------+-----+
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// toYAML must keep JSON names and order and keep strings strings.
func TestToYAML(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := api.Event{Type: "lifecycle", Timestamp: ts, Metadata: []byte(`{"action":"x","context":{"n":"1","b":"true"}}`)}
	buf, err := toYAML(ev)
	if err != nil {
		t.Fatal(err)
	}
	out := string(buf)
	if !strings.HasPrefix(out, "type: lifecycle\ntimestamp: ") || !strings.Contains(out, "metadata:\n  action: x\n") {
		t.Fatalf("layout:\n%s", out)
	}
	var back struct {
		Metadata struct {
			Context map[string]any `yaml:"context"`
		} `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(buf, &back); err != nil {
		t.Fatal(err)
	}
	// "1" and "true" were strings in JSON and must not turn into an int
	// and a bool.
	if back.Metadata.Context["n"] != "1" || back.Metadata.Context["b"] != "true" {
		t.Fatalf("scalars changed type: %#v\n%s", back.Metadata.Context, out)
	}
}
