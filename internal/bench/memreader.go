package bench

import (
	"context"
	"iter"
	"slices"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// memReader is a subscribe.Reader over commits held in memory, in Position
// order: it lets the worker be measured without DynamoDB, to see what the
// worker itself costs per commit.
type memReader struct {
	commits []store.Commit // in Position order
}

var _ subscribe.Reader = (*memReader)(nil)

// newMemReader returns n commits over aggs aggregates (version v of every
// aggregate, then v+1, …), committed an hour ago, one millisecond apart.
func newMemReader(n, aggs int) *memReader {
	aggs = max(min(aggs, n), 1)
	at := time.Now().Add(-time.Hour).UnixMilli()
	ids := ids("m", aggs)
	r := &memReader{commits: make([]store.Commit, 0, n)}
	for i := range n {
		id := ids[i%aggs]
		r.commits = append(r.commits, store.Commit{
			CommitID: store.FormatCommitID(at+int64(i), id), CommittedAt: at + int64(i),
			AggregateID: id, Version: int64(i / aggs), Events: events,
		})
	}
	return r
}

// Scan yields the commits after after and before opts.Before.
func (r *memReader) Scan(ctx context.Context, after store.Position, optFns ...func(*store.ScanOptions)) iter.Seq2[store.Commit, error] {
	var opts store.ScanOptions
	for _, fn := range optFns {
		fn(&opts)
	}
	return func(yield func(store.Commit, error) bool) {
		i, _ := slices.BinarySearchFunc(r.commits, after, func(c store.Commit, p store.Position) int { return c.Position().Compare(p) })
		for ; i < len(r.commits); i++ {
			c := r.commits[i]
			if c.Position().Compare(after) <= 0 {
				continue
			}
			if opts.Before != "" && c.CommitID >= opts.Before {
				return
			}
			if err := ctx.Err(); err != nil {
				yield(store.Commit{}, err)
				return
			}
			if !yield(c, nil) {
				return
			}
		}
	}
}

// Query yields one aggregate's commits from fromVersion (below
// opts.ToVersion when set).
func (r *memReader) Query(ctx context.Context, aggregateID string, fromVersion int64, optFns ...func(*store.QueryOptions)) iter.Seq2[store.Commit, error] {
	var opts store.QueryOptions
	for _, fn := range optFns {
		fn(&opts)
	}
	return func(yield func(store.Commit, error) bool) {
		for _, c := range r.commits {
			if c.AggregateID != aggregateID || c.Version < fromVersion || (opts.ToVersion > 0 && c.Version >= opts.ToVersion) {
				continue
			}
			if !yield(c, nil) {
				return
			}
		}
	}
}
