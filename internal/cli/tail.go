package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/awscfg"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// tailSubscription names the subscription of tail --follow in its
// in-memory checkpoint store and in log lines.
const tailSubscription = "tail"

var tailCommand = &command{
	name:     "tail",
	summary:  "print commits from a start point as JSON lines, and follow new ones",
	synopsis: "[--from beginning|now|COMMIT_ID|TIME] [--follow] [--source index|stream|auto] [flags]",
	help: `
Prints commits as JSON lines, in the commit shape, like scan:
  {"commitId":…,"committedAt":…,"aggregateId":…,"version":…,"events":[…]}

--from is where to start: beginning, now, a commit id (YYYYMMDDHHmmssSSS,
optionally ":aggregateId"; inclusive) or an RFC 3339 time such as
2026-11-26T08:00:00Z (the first commit at or after it). Default: beginning,
or now with --follow.

Without --follow it reads the commit-order index from the start point to the
end of the table, in global commit order (commitId, then aggregateId and
version), and exits.

With --follow it tails the table as a subscription worker does, until
Ctrl-C (exit status 0), reading from --source: the commit-order index
(index, the default), the table's DynamoDB stream (stream), or the index up
to now then the stream (auto). Its position is kept in memory only: nothing
is written to the checkpoint table, and a new tail starts over from --from.
Order: one aggregate's commits in version order, with no gaps; across
aggregates, commit order as the index shows it, and a commit that becomes
visible late (the index is eventually consistent, writers' clocks differ)
is printed late rather than dropped. Commits show up about a second after
they are appended (the index source waits for late arrivals to settle).

Exit status: 0 success (with --follow: stopped by Ctrl-C), 1 a failure,
2 a usage error, 130 interrupted (without --follow).`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		sf := addStoreFlags(fs, env)
		from := fs.String("from", "", "start `POINT`: beginning, now, a commit id (YYYYMMDDHHmmssSSS[:aggregateId]) or an\nRFC 3339 time (default: beginning, or now with --follow)")
		follow := fs.Bool("follow", false, "keep printing new commits until Ctrl-C")
		source := fs.String("source", "index", "with --follow, where to read commits (`SOURCE`): index, stream or auto")
		return func(ctx context.Context, s *session) error {
			def := "beginning"
			if *follow {
				def = "now"
			}
			start, err := parseStartPoint("from", *from, def)
			if err != nil {
				return err
			}
			mode, err := subscribe.ParseSourceMode(*source)
			if err != nil {
				return flagErrorf("--source %q: want index, stream or auto", *source)
			}
			if !*follow && mode != subscribe.SourceIndex {
				return flagErrorf("--source %s: only with --follow (without it, tail reads the index)", *source)
			}
			client, st, err := sf.open(ctx, s)
			if err != nil {
				return err
			}
			if !*follow {
				return printCommits(s, st.Config(), st.Scan(ctx, startPosition(start, time.Now())))
			}
			// The worker retries what fails; a missing table is better said
			// at once.
			if _, _, err := st.Head(ctx); err != nil {
				return explainNotFound(err, st.Config().TableName)
			}
			cfg := subscribe.Config{
				Reader:      st,
				Checkpoints: memcheckpoint.New(),
				Owner:       "eventstore-tail",
				Logger:      slog.New(slog.NewTextHandler(s.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			}
			if mode != subscribe.SourceIndex {
				awsCfg, err := awscfg.Load(ctx, awscfg.Options{Region: sf.region, Logger: sdkLogger(s.stderr)})
				if err != nil {
					return err
				}
				cfg.Streams, cfg.Tables = awscfg.Streams(awsCfg, sf.endpoint, client), client
			}
			return follows(ctx, s, cfg, start, mode)
		}
	},
}

// parseStartPoint reads the value of a start point flag (tail --from, scan
// --from-commit-id): beginning, now, a commit id or an RFC 3339 time, as
// subscribe.ParseStart reads it; empty or blank means def. Anything else is
// a usage error naming the flag.
func parseStartPoint(flagName, value, def string) (subscribe.Start, error) {
	if strings.TrimSpace(value) == "" {
		value = def
	}
	start, err := subscribe.ParseStart(value)
	if err != nil {
		return subscribe.Start{}, flagErrorf("--%s %q: %s", flagName, value, startForms)
	}
	return start, nil
}

// startPosition returns the index position a start point means at time
// now: scanning after it begins at the start point.
func startPosition(start subscribe.Start, now time.Time) store.Position {
	// CheckpointAt writes an index position; DescribeCheckpoint reads its
	// After back.
	info, err := subscribe.DescribeCheckpoint(subscribe.CheckpointAt(start, now), 0)
	if err != nil {
		return store.Position{}
	}
	return info.After
}

// follows runs a worker with one subscription that prints each commit,
// until ctx ends (a clean stop: nil) or printing fails.
func follows(ctx context.Context, s *session, cfg subscribe.Config, start subscribe.Start, mode subscribe.SourceMode) error {
	w, err := subscribe.NewWorker(cfg)
	if err != nil {
		return err
	}
	enc := newCommitEncoder(s.stdout)
	var mu sync.Mutex // Concurrency 1 calls one at a time; the lock says so
	printer := subscribe.HandlerFunc(func(_ context.Context, c subscribe.Commit) error {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
		if err := s.stdout.Flush(); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
		return nil
	})
	err = w.Register(subscribe.Subscription{
		Name:        tailSubscription,
		Handler:     printer,
		Source:      mode,
		Start:       start,
		Concurrency: 1,
		// A failed write ends the tail: no retry, no parking.
		Policy: subscribe.PolicyStop,
		Retry:  subscribe.RetryPolicy{MaxAttempts: 1},
		Index:  subscribe.IndexOptions{PollMax: time.Second},
	})
	if err != nil {
		return err
	}
	if err := w.Run(ctx); err != nil {
		var stopped *subscribe.StoppedError
		if errors.As(err, &stopped) {
			return stopped.Err
		}
		return err
	}
	return nil
}
