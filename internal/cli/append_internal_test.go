package cli

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLine(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxLineBytes)
	for _, tc := range []struct {
		name, in string
		want     []string
		err      error
	}{
		{"empty", "", nil, io.EOF},
		{"no final newline", "a\nb", []string{"a", "b"}, io.EOF},
		{"final newline", "a\nb\n", []string{"a", "b"}, io.EOF},
		{"blank lines", "\n\na\n", []string{"", "", "a"}, io.EOF},
		{"CRLF kept for TrimSpace", "a\r\nb", []string{"a\r", "b"}, io.EOF},
		{"longest line", long + "\nb", []string{long, "b"}, io.EOF},
		{"longest line at the end", long, []string{long}, io.EOF},
		{"too long at the end", long + "x", nil, errLineTooLong},
		{"too long", "a\n" + long + "x\nb\n", []string{"a"}, errLineTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// One byte a read: lines span many reads.
			br := bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(tc.in)), 16)
			var got []string
			var err error
			for {
				var line []byte
				line, err = readLine(br)
				if err != nil {
					break
				}
				got = append(got, string(line))
			}
			if !errors.Is(err, tc.err) || strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("got %d lines, %v; want %d lines, %v", len(got), err, len(tc.want), tc.err)
			}
		})
	}
}

func TestParseCommitCompactsEvents(t *testing.T) {
	t.Parallel()
	c, err := parseCommit([]byte(`{"aggregateId":"a","version":3,"events":[ {"k": "<v>"} ,2 ]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.AggregateID != "a" || c.Version != 3 || string(c.Events) != `[{"k":"<v>"},2]` {
		t.Errorf("parseCommit = %+v (events %s)", c, c.Events)
	}
}
