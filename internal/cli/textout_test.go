package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestEscapeText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"acc-1", "acc-1"},
		{`C:\path`, `C:\path`},
		{"café ünïcode 日本", "café ünïcode 日本"},
		{"evil\x1b]0;pwned\x07id", `evil\x1b]0;pwned\x07id`},
		{"\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"a\tb\nc\rd", `a\tb\nc\rd`},
		{"del\x7f", `del\x7f`},
		{"c1\u009b31m", `c1\u009b31m`},
		{"bidi\u202eevil\u2066", `bidi\u202eevil\u2066`},
		{"bad\xffutf8", `bad\xffutf8`},
	}
	for _, c := range cases {
		if got := escapeText(c.in); got != c.want {
			t.Errorf("escapeText(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := escapeMessage("line 1\n\tline 2 \x1b]0;x\x07"); got != "line 1\n\tline 2 \\x1b]0;x\\x07" {
		t.Errorf("escapeMessage keeps lines and tabs, escapes the rest: %q", got)
	}
}

func TestTextTableKeepsColumns(t *testing.T) {
	var b bytes.Buffer
	tt := newTextTable(&b)
	tt.row("A", "B", "C")
	tt.row("x\ty", "two\nlines", 3)
	tt.flush()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), b.String())
	}
	if !strings.Contains(lines[1], `x\ty`) || !strings.Contains(lines[1], `two\nlines`) || !strings.HasSuffix(lines[1], "3") {
		t.Errorf("row %q: want the cells escaped, in their columns", lines[1])
	}
	if i, j := strings.Index(lines[0], "C"), strings.Index(lines[1], "3"); i != j {
		t.Errorf("column C at %d, its cell at %d:\n%s", i, j, b.String())
	}
}

func TestJSONSafeWriter(t *testing.T) {
	var b bytes.Buffer
	v := map[string]string{"id": "a\x1b]0;t\x07\u009b\u202e\x7fz"}
	if err := json.NewEncoder(jsonSafeWriter{w: &b}).Encode(v); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.String() {
		if r != '\n' && unsafeRune(r) {
			t.Errorf("output %q holds %U raw", b.String(), r)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["id"] != v["id"] {
		t.Errorf("output %s decodes to %q (%v), want the same value", b.String(), back["id"], err)
	}
}
