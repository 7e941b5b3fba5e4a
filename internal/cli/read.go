package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
)

var queryCommand = &command{
	name:     "query",
	summary:  "print one aggregate's commits, in version order, as JSON lines",
	synopsis: "--aggregate ID [--from-version N] [flags]",
	help: `
Prints the commits of one aggregate from --from-version on (inclusive), read
with strongly consistent reads, one JSON object a line:
  {"commitId":…,"committedAt":…,"aggregateId":…,"version":…,"events":[…]}

An item that does not decode as a commit is reported on stderr with its key
and not printed; the rest is printed and the exit status is 1.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		sf := addStoreFlags(fs, env)
		aggregate := fs.String("aggregate", "", "aggregate `ID` (required)")
		from := fs.Int64("from-version", 0, "first `VERSION` to print (inclusive)")
		return func(ctx context.Context, s *session) error {
			switch {
			case *aggregate == "":
				return flagErrorf("--aggregate is required")
			case *from < 0:
				return flagErrorf("--from-version %d: want 0 or more", *from)
			}
			_, st, err := sf.open(ctx, s)
			if err != nil {
				return err
			}
			return printCommits(s, st.Config(), st.Query(ctx, *aggregate, *from))
		}
	},
}

var scanCommand = &command{
	name:    "scan",
	summary: "print every commit, in commit order, as JSON lines",
	help: `
Prints every commit in global commit order (the commit-order index: commitId,
then aggregateId and version), from --from-commit-id on, one JSON object a
line:
  {"commitId":…,"committedAt":…,"aggregateId":…,"version":…,"events":[…]}

--from-commit-id takes what tail --from takes, with the same meaning:
beginning (the default), now, a commit id (YYYYMMDDHHmmssSSS, optionally
":aggregateId"; inclusive) or an RFC 3339 time such as 2026-11-26T08:00:00Z
(the first commit at or after it). Anything else is a usage error (exit
status 2).

The index is eventually consistent: a commit appended moments ago may not be
listed yet. An item that does not decode as a commit is reported on stderr
with its key and not printed; the rest is printed and the exit status is 1.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		sf := addStoreFlags(fs, env)
		from := fs.String("from-commit-id", "", "start `POINT`, as tail --from takes it: beginning, now, a commit id\n(YYYYMMDDHHmmssSSS[:aggregateId], inclusive) or an RFC 3339 time (default:\nbeginning)")
		return func(ctx context.Context, s *session) error {
			start, err := parseStartPoint("from-commit-id", *from, "beginning")
			if err != nil {
				return err
			}
			_, st, err := sf.open(ctx, s)
			if err != nil {
				return err
			}
			return printCommits(s, st.Config(), st.Scan(ctx, startPosition(start, time.Now())))
		}
	},
}

// printCommits prints each commit of seq as a JSON line. Corrupt items are
// reported on stderr and counted; any other error ends the listing.
func printCommits(s *session, cfg store.Config, seq iter.Seq2[store.Commit, error]) error {
	enc := newCommitEncoder(s.stdout)
	corrupt := 0
	for c, err := range seq {
		if err != nil {
			if errors.Is(err, store.ErrCorruptCommit) {
				corrupt++
				s.warnf("%v", err)
				continue
			}
			return explainNotFound(err, cfg.TableName)
		}
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
	}
	if corrupt > 0 {
		return fmt.Errorf("%d corrupt %s not printed", corrupt, plural(corrupt, "item", "items"))
	}
	return nil
}

// newCommitEncoder returns an encoder of commits as JSON lines, in the
// commit shape, with events as stored (no HTML escaping).
//
// DEL, the C1 controls and the bidirectional formatting characters are
// written as \u escapes (jsonSafeWriter), so that a commit printed on a
// terminal cannot drive it; the JSON values are the same.
func newCommitEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(jsonSafeWriter{w: w})
	enc.SetEscapeHTML(false)
	return enc
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
