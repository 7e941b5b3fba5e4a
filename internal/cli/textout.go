package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// textTable prints aligned columns, as every table of the commands does.
// Each cell is escaped with escapeText: aggregate ids, reasons, owners and
// positions are data anyone who can write to the tables chose, and a
// control character printed raw drives the terminal (an OSC sequence sets
// its title, a CSI one moves the cursor, a newline or a tab breaks the
// columns).
type textTable struct{ tw *tabwriter.Writer }

func newTextTable(w io.Writer) *textTable {
	return &textTable{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

// row prints one row: each cell as fmt.Sprint formats it, escaped.
func (t *textTable) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			_, _ = io.WriteString(t.tw, "\t")
		}
		_, _ = io.WriteString(t.tw, escapeText(fmt.Sprint(c)))
	}
	_, _ = io.WriteString(t.tw, "\n")
}

// flush writes the aligned rows out.
func (t *textTable) flush() { _ = t.tw.Flush() }

// unsafeRune reports whether r is one a terminal acts on rather than
// shows: a control character (C0, DEL, C1) or a bidirectional formatting
// character, which reorders what follows it on screen.
func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f,
		r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// escapeText returns s with every unsafe rune, and every byte that is not
// UTF-8, written as Go writes it in a quoted string: \t, \n, \r, \x1b,
// \u009b, \u202e. Everything else, a backslash included, is left as it is,
// so that ordinary ids print unchanged.
func escapeText(s string) string {
	return escape(s, false)
}

// escapeMessage is escapeText for a message of several lines: newlines
// and tabs stay.
func escapeMessage(s string) string {
	return escape(s, true)
}

func escape(s string, keepLines bool) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case unsafeRune(r) && r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// jsonSafeWriter writes JSON text with DEL, the C1 controls and the
// bidirectional formatting characters written as \u escapes, which
// encoding/json leaves raw (it escapes the C0 controls itself). The JSON
// means the same; only its spelling changes. Each Write must be whole
// JSON values, as json.Encoder's are.
type jsonSafeWriter struct{ w io.Writer }

func (j jsonSafeWriter) Write(p []byte) (int, error) {
	clean := true
	for _, r := range string(p) {
		if r == 0x7f || (r >= 0x80 && unsafeRune(r)) {
			clean = false
			break
		}
	}
	if clean {
		return j.w.Write(p)
	}
	var b bytes.Buffer
	for _, r := range string(p) {
		if r == 0x7f || (r >= 0x80 && unsafeRune(r)) {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	if _, err := j.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
