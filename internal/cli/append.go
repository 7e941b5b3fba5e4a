package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/dynamodb-event-store/eventstore/store"
)

// maxLineBytes bounds one input line of append: well above DynamoDB's
// 400 KB item limit, so that the store reports the size of an item too large
// and only absurd lines stop here.
const maxLineBytes = 1 << 20

var appendCommand = &command{
	name:     "append",
	summary:  "append commits read as JSON lines from stdin",
	synopsis: "[flags] < commits.jsonl",
	help: `
Reads commits from stdin, one JSON object a line, and appends each in order,
with a conditional write (a version already taken is a conflict):
  {"aggregateId":"acc-1","version":0,"events":[{"type":"opened"}]}
All three fields are required; any other field is an error (commitId and
committedAt are assigned by the store). Blank lines are skipped.

Prints each stored commit as a JSON line, with its commitId and committedAt.
Stops at the first error; the commits before it stay written and were
printed. Exit status 3 on a version conflict, 2 on a bad line (the message
names the line number), 1 on other errors.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		sf := addStoreFlags(fs, env)
		return func(ctx context.Context, s *session) error {
			_, st, err := sf.open(ctx, s)
			if err != nil {
				return err
			}
			return appendLines(ctx, s, st)
		}
	},
}

func appendLines(ctx context.Context, s *session, st *store.Store) error {
	enc := newCommitEncoder(s.stdout)
	lines, stop := readLines(s.stdin)
	defer stop()
	for {
		var ln line
		select {
		case ln = <-lines:
		default:
			// Input is not ready: show what was appended so far before
			// waiting, so that a slow producer sees each commit as it
			// lands.
			if err := s.stdout.Flush(); err != nil {
				return fmt.Errorf("write stdout: %w", err)
			}
			select {
			case ln = <-lines:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		if ln.err != nil {
			if errors.Is(ln.err, errLineTooLong) {
				return withCode(ExitUsage, fmt.Errorf("line %d: %w", ln.no, ln.err))
			}
			return fmt.Errorf("read stdin: line %d: %w", ln.no, ln.err)
		}
		if ln.text == nil {
			return nil // end of input
		}
		text := bytes.TrimSpace(ln.text)
		if len(text) == 0 {
			continue
		}
		c, err := parseCommit(text)
		if err != nil {
			return withCode(ExitUsage, fmt.Errorf("line %d: %w", ln.no, err))
		}
		stored, err := st.Append(ctx, c)
		switch {
		case errors.Is(err, store.ErrVersionConflict):
			return withCode(ExitConflict, fmt.Errorf("line %d: %w", ln.no, err))
		case errors.Is(err, store.ErrInvalidCommit):
			return withCode(ExitUsage, fmt.Errorf("line %d: %w", ln.no, err))
		case err != nil:
			return fmt.Errorf("line %d: %w", ln.no, explainNotFound(err, st.Config().TableName))
		}
		if err := enc.Encode(stored); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
	}
}

// commitLine is one input line of append.
type commitLine struct {
	AggregateID *string         `json:"aggregateId"`
	Version     *int64          `json:"version"`
	Events      json.RawMessage `json:"events"`
}

// parseCommit decodes one input line: a JSON object with aggregateId,
// version and events, and nothing else. The store validates the values.
func parseCommit(text []byte) (store.Commit, error) {
	if text[0] != '{' {
		return store.Commit{}, errors.New("want a JSON object {\"aggregateId\":…,\"version\":…,\"events\":[…]}")
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	var in commitLine
	if err := dec.Decode(&in); err != nil {
		return store.Commit{}, fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return store.Commit{}, errors.New("malformed JSON: more after the object")
	}
	var missing []string
	if in.AggregateID == nil {
		missing = append(missing, "aggregateId")
	}
	if in.Version == nil {
		missing = append(missing, "version")
	}
	if len(in.Events) == 0 {
		missing = append(missing, "events")
	}
	if len(missing) > 0 {
		return store.Commit{}, fmt.Errorf("missing %s", joinAnd(missing))
	}
	// Store the events as compact JSON, as the original package does
	// (JSON.stringify); the line's whitespace means nothing.
	var events bytes.Buffer
	if err := json.Compact(&events, in.Events); err != nil {
		return store.Commit{}, fmt.Errorf("malformed JSON: events: %w", err)
	}
	return store.Commit{AggregateID: *in.AggregateID, Version: *in.Version, Events: events.Bytes()}, nil
}

func joinAnd(s []string) string {
	switch len(s) {
	case 1:
		return s[0]
	case 2:
		return s[0] + " and " + s[1]
	}
	out := ""
	for i, v := range s {
		switch {
		case i == len(s)-1:
			out += ", and " + v
		case i > 0:
			out += ", " + v
		default:
			out = v
		}
	}
	return out
}

// line is one line of input, numbered from 1. At the end of input, text is
// nil and err is nil; a read error is in err.
type line struct {
	no   int
	text []byte
	err  error
}

var errLineTooLong = fmt.Errorf("longer than %d bytes (DynamoDB's item limit is %d)", maxLineBytes, store.MaxItemBytes)

// readLines reads r line by line in a goroutine, so that waiting for input
// does not keep a cancelled command from returning. The channel ends with a
// line whose text is nil. stop releases the goroutine; one blocked in a read
// of r returns when that read does.
func readLines(r io.Reader) (<-chan line, func()) {
	out := make(chan line)
	done := make(chan struct{})
	go func() {
		br := bufio.NewReaderSize(r, 64<<10)
		for no := 1; ; no++ {
			text, err := readLine(br)
			ln := line{no: no, text: text}
			switch {
			case err == io.EOF && len(text) == 0:
				ln.text = nil
			case err != nil && err != io.EOF:
				ln.text, ln.err = nil, err
			}
			select {
			case out <- ln:
			case <-done:
				return
			}
			if ln.text == nil {
				return
			}
		}
	}()
	return out, func() { close(done) }
}

// readLine returns the next line without its end, in a new slice, or
// io.EOF after the last one.
func readLine(br *bufio.Reader) ([]byte, error) {
	var text []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(text)+len(chunk) > maxLineBytes+1 {
			return nil, errLineTooLong
		}
		text = append(text, chunk...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(text) > 0:
			if len(text) > maxLineBytes {
				return nil, errLineTooLong
			}
			return text, nil
		case err != nil:
			return nil, err
		}
		text = bytes.TrimSuffix(text, []byte("\n"))
		if len(text) > maxLineBytes {
			return nil, errLineTooLong
		}
		return text, nil
	}
}
