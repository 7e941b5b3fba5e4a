package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/internal/original"
	"github.com/dynamodb-event-store/eventstore/store"
)

// OriginalResult is section 2: the Go store against the original npm
// package dynamodb-event-store@2.2.0 running in node, on the same emulator,
// the same data, in the same run. Base is the original.
type OriginalResult struct {
	// Node and AWSSDK are the versions the original ran on.
	Node   string `json:"node"`
	AWSSDK string `json:"awsSdk"`
	// Concurrency is the appends in flight on each side.
	Concurrency int `json:"concurrency"`
	// Append: rounds of appends at Concurrency, each side timed from its
	// first append to its last (the original inside node, by
	// original.Client.AppendMany); an op is a round.
	Append Pair `json:"append"`
	// Query: one aggregate's commits, strongly consistent. The original's
	// time includes the driver's round trip (JSON over a pipe).
	Query Pair `json:"query"`
	// Scan: the commit-order index from the start, ScanBytes in all, under
	// the 1 MB the original reads (it reads the first page only). The
	// original's time includes the driver's round trip.
	Scan Pair `json:"scan"`
	// QueryBytes and ScanBytes are the item bytes each read returns.
	QueryBytes int `json:"queryBytes"`
	ScanBytes  int `json:"scanBytes"`
}

func originalSection(ctx context.Context, e *env, sz Sizes, cacheDir string) (*OriginalResult, error) {
	client, _, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	res := &OriginalResult{Concurrency: sz.OriginalConcurrency}

	// Appends: both sides write to one table.
	wcfg, dropW, err := e.table(ctx, client, "orig-append")
	if err != nil {
		return nil, err
	}
	defer dropW()
	ws, err := store.New(client, wcfg)
	if err != nil {
		return nil, err
	}
	e.logf("starting the original package in node")
	ow, err := original.Start(ctx, original.Options{Endpoint: e.endpoint, TableName: wcfg.TableName, IndexName: wcfg.IndexName, CacheDir: cacheDir})
	if err != nil {
		return nil, err
	}
	defer closeOriginal(e, ow)
	info := ow.Info()
	res.Node, res.AWSSDK = info.Node, info.AWSSDK

	e.logf("append: %d + %d rounds of %d per side at concurrency %d", 1, sz.OriginalRounds, sz.OriginalAppends, sz.OriginalConcurrency)
	res.Append.Name = fmt.Sprintf("Append, %d in flight", sz.OriginalConcurrency)
	for round := -1; round < sz.OriginalRounds; round++ { // round -1 warms up
		goCommits := make([]store.Commit, sz.OriginalAppends)
		origCommits := make([]original.Commit, sz.OriginalAppends)
		for i := range goCommits {
			goCommits[i] = store.Commit{AggregateID: fmt.Sprintf("g%d-%d", round+1, i), Events: events}
			origCommits[i] = original.Commit{AggregateID: fmt.Sprintf("o%d-%d", round+1, i), Events: events}
		}
		goSide := func() (time.Duration, error) {
			return appendMany(ctx, ws, goCommits, sz.OriginalConcurrency)
		}
		origSide := func() (time.Duration, error) {
			r, err := ow.AppendMany(ctx, origCommits, sz.OriginalConcurrency)
			if err == nil && r.Count != len(origCommits) {
				err = fmt.Errorf("bench: original appended %d of %d", r.Count, len(origCommits))
			}
			return r.Elapsed, err
		}
		var dg, do time.Duration
		if round%2 == 0 {
			if dg, err = goSide(); err == nil {
				do, err = origSide()
			}
		} else {
			if do, err = origSide(); err == nil {
				dg, err = goSide()
			}
		}
		if err != nil {
			return nil, err
		}
		if round >= 0 {
			res.Append.Store.record(dg)
			res.Append.Base.record(do)
		}
	}
	res.Append.finish(sz.OriginalAppends, 1)

	// Reads: one table holding an aggregate of QueryCommits commits and
	// more aggregates up to OriginalScanCommits commits in all.
	rcfg, dropR, err := e.table(ctx, client, "orig-read")
	if err != nil {
		return nil, err
	}
	defer dropR()
	rs, err := store.New(client, rcfg)
	if err != nil {
		return nil, err
	}
	rest := max(sz.OriginalScanCommits-sz.QueryCommits, 0)
	aggs := max(rest/10, 1) // 10 commits each
	if err := loadOne(ctx, rs, "q", sz.QueryCommits); err != nil {
		return nil, err
	}
	if err := load(ctx, rs, ids("a", aggs), rest/aggs); err != nil {
		return nil, err
	}
	total := sz.QueryCommits + aggs*(rest/aggs)
	if res.QueryBytes, err = readBytes(ctx, client, sdkQueryInput(rcfg.TableName, "q"), sz.QueryCommits); err != nil {
		return nil, err
	}
	if res.ScanBytes, err = readBytes(ctx, client, sdkScanInput(rcfg.TableName), total); err != nil {
		return nil, err
	}
	if res.ScanBytes >= 1<<20 {
		return nil, fmt.Errorf("bench: the scan's %d commits take %d bytes, over the 1 MB the original reads: lower OriginalScanCommits", total, res.ScanBytes)
	}
	or, err := original.Start(ctx, original.Options{Endpoint: e.endpoint, TableName: rcfg.TableName, IndexName: rcfg.IndexName, CacheDir: cacheDir})
	if err != nil {
		return nil, err
	}
	defer closeOriginal(e, or)

	e.logf("query: %d + %d pairs of %d commits", sz.OriginalReadWarmup, sz.OriginalReadOps, sz.QueryCommits)
	res.Query.Name = fmt.Sprintf("Query (one aggregate, %s commits, consistent)", count(sz.QueryCommits))
	if err := interleave(ctx, sz.OriginalReadWarmup, sz.OriginalReadOps, sz.QueryCommits, &res.Query.Store, &res.Query.Base,
		func() error { return drain(rs.Query(ctx, "q", 0), sz.QueryCommits) },
		func() error { return expectOriginal(or.Query(ctx, "q", 0))(sz.QueryCommits) }); err != nil {
		return nil, err
	}
	res.Query.finish(sz.QueryCommits, 1)

	e.logf("scan: %d + %d pairs of %d commits", sz.OriginalReadWarmup, sz.OriginalReadOps, total)
	res.Scan.Name = fmt.Sprintf("Scan (index, %s commits, %d KB)", count(total), res.ScanBytes/1024)
	if err := interleave(ctx, sz.OriginalReadWarmup, sz.OriginalReadOps, total, &res.Scan.Store, &res.Scan.Base,
		func() error { return drain(rs.Scan(ctx, store.Position{}), total) },
		func() error { return expectOriginal(or.Scan(ctx, ""))(total) }); err != nil {
		return nil, err
	}
	res.Scan.finish(total, 1)
	// Client CPU is not comparable across the two (node's is not this
	// process's): report neither side's.
	for _, p := range []*Pair{&res.Query, &res.Scan} {
		p.Store.CPUPerCommit, p.Base.CPUPerCommit = 0, 0
	}
	return res, nil
}

// expectOriginal checks the number of commits an original read returned.
func expectOriginal(commits []json.RawMessage, err error) func(want int) error {
	return func(want int) error {
		if err != nil {
			return err
		}
		if len(commits) != want {
			return fmt.Errorf("bench: the original read %d commits, want %d", len(commits), want)
		}
		return nil
	}
}

// readBytes reads with the bare SDK and returns the item bytes, failing
// unless want commits were read.
func readBytes(ctx context.Context, client *dynamodb.Client, in *dynamodb.QueryInput, want int) (int, error) {
	n, b, err := sdkRead(ctx, client, in)
	if err == nil && n != want {
		err = fmt.Errorf("bench: read %d commits, want %d", n, want)
	}
	return b, err
}

// appendMany appends commits with Append, concurrency at a time, and
// returns the time from the first append to the last; it stops at the
// first error.
func appendMany(ctx context.Context, s *store.Store, commits []store.Commit, concurrency int) (time.Duration, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	t0 := time.Now()
	for range max(concurrency, 1) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(commits) {
					return
				}
				mu.Lock()
				stop := firstErr != nil
				mu.Unlock()
				if stop {
					return
				}
				if _, err := s.Append(ctx, commits[i]); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("bench: append %d: %w", i, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(t0), firstErr
}

func closeOriginal(e *env, c *original.Client) {
	if err := c.Close(); err != nil && !errors.Is(err, original.ErrClosed) {
		e.logf("closing the original's driver: %v", err)
	}
}
