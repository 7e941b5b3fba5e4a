package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/store"
)

// OverheadResult is section 1: the store against the same calls made with
// the bare SDK, on one client and one table per measure.
type OverheadResult struct {
	// Append: one conditional PutItem per commit, one at a time.
	Append Pair `json:"append"`
	// ConcurrentAppend: the same with Concurrency appends in flight, each
	// goroutine alternating store and SDK appends. A side's Rate is
	// Concurrency over its median latency: the throughput that side would
	// have at that concurrency under the same load (Little's law); CPU per
	// commit is not measured (both sides run at once).
	ConcurrentAppend Pair `json:"concurrentAppend"`
	// Concurrency is the appends in flight in ConcurrentAppend.
	Concurrency int `json:"concurrency"`
	// Query: one aggregate's commits, strongly consistent, every page.
	Query Pair `json:"query"`
	// Scan: the commit-order index from the start, every page.
	Scan Pair `json:"scan"`
	// Control is the bare SDK's Query against itself, measured the same
	// way: how far from 1 a ratio strays when nothing differs.
	Control Pair `json:"control"`
}

func overhead(ctx context.Context, e *env, sz Sizes) (*OverheadResult, error) {
	client, _, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	res := &OverheadResult{Concurrency: sz.Concurrency}

	// Appends, one at a time and concurrently, on one table.
	cfg, drop, err := e.table(ctx, client, "append")
	if err != nil {
		return nil, err
	}
	defer drop()
	s, err := store.New(client, cfg)
	if err != nil {
		return nil, err
	}
	var n atomic.Int64
	storeAppend := func() error {
		id := "s-" + strconv.FormatInt(n.Add(1), 10)
		_, err := s.Append(ctx, store.Commit{AggregateID: id, Version: 0, Events: events})
		return err
	}
	sdkAppend := func() error {
		return sdkPut(ctx, client, cfg.TableName, "k-"+strconv.FormatInt(n.Add(1), 10), 0)
	}
	e.logf("append: %d + %d pairs", sz.AppendWarmup, sz.AppendOps)
	res.Append.Name = "Append"
	if err := interleave(ctx, sz.AppendWarmup, sz.AppendOps, 1, &res.Append.Store, &res.Append.Base, storeAppend, sdkAppend); err != nil {
		return nil, err
	}
	if err := measureAllocs(sz.AllocRuns, 1, &res.Append, storeAppend, sdkAppend); err != nil {
		return nil, err
	}
	res.Append.finish(1, 1)

	e.logf("append at concurrency %d: %d + %d per side", sz.Concurrency, sz.ConcurrentWarmup, sz.ConcurrentOps)
	res.ConcurrentAppend.Name = fmt.Sprintf("Append at concurrency %d", sz.Concurrency)
	if err := concurrentPair(ctx, sz, &res.ConcurrentAppend, storeAppend, sdkAppend); err != nil {
		return nil, err
	}
	res.ConcurrentAppend.Store.AllocsPerCommit = res.Append.Store.AllocsPerCommit
	res.ConcurrentAppend.Base.AllocsPerCommit = res.Append.Base.AllocsPerCommit
	res.ConcurrentAppend.finish(1, sz.Concurrency)

	// Query: one aggregate of QueryCommits commits.
	if err := readPair(ctx, e, client, "query", sz.QueryCommits, func(ctx context.Context, s *store.Store, c *dynamodb.Client) (func() error, func() error, error) {
		if err := loadOne(ctx, s, "q", sz.QueryCommits); err != nil {
			return nil, nil, err
		}
		in := sdkQueryInput(s.Config().TableName, "q")
		return func() error { return drain(s.Query(ctx, "q", 0), sz.QueryCommits) },
			func() error { return expectRead(ctx, c, in, sz.QueryCommits) }, nil
	}, sz.QueryWarmup, sz.QueryOps, sz.AllocRuns, &res.Query, &res.Control); err != nil {
		return nil, err
	}
	res.Query.Name = fmt.Sprintf("Query (one aggregate, %s commits, consistent)", count(sz.QueryCommits))
	res.Control.Name = "Control: the SDK's Query against itself"

	// Scan: the index over ScanCommits commits.
	if err := readPair(ctx, e, client, "scan", sz.ScanCommits, func(ctx context.Context, s *store.Store, c *dynamodb.Client) (func() error, func() error, error) {
		aggs := max(sz.ScanCommits/10, 1) // 10 commits each
		if err := load(ctx, s, ids("a", aggs), sz.ScanCommits/aggs); err != nil {
			return nil, nil, err
		}
		total := aggs * (sz.ScanCommits / aggs)
		in := sdkScanInput(s.Config().TableName)
		return func() error { return drain(s.Scan(ctx, store.Position{}), total) },
			func() error { return expectRead(ctx, c, in, total) }, nil
	}, sz.ScanWarmup, sz.ScanOps, sz.AllocRuns, &res.Scan, nil); err != nil {
		return nil, err
	}
	res.Scan.Name = fmt.Sprintf("Scan (index, %s commits)", count(sz.ScanCommits))
	return res, nil
}

// readPair creates a table, lets setup load it and return the store's read
// and the SDK's, and measures them interleaved into p; then, if control is
// not nil, the SDK's read against itself into control.
func readPair(ctx context.Context, e *env, client *dynamodb.Client, what string, perOp int,
	setup func(ctx context.Context, s *store.Store, c *dynamodb.Client) (func() error, func() error, error),
	warmup, ops, allocRuns int, p, control *Pair) error {
	cfg, drop, err := e.table(ctx, client, what)
	if err != nil {
		return err
	}
	defer drop()
	s, err := store.New(client, cfg)
	if err != nil {
		return err
	}
	storeOp, sdkOp, err := setup(ctx, s, client)
	if err != nil {
		return err
	}
	e.logf("%s: %d + %d pairs of %d commits", what, warmup, ops, perOp)
	if err := interleave(ctx, warmup, ops, perOp, &p.Store, &p.Base, storeOp, sdkOp); err != nil {
		return err
	}
	if err := measureAllocs(allocRuns, perOp, p, storeOp, sdkOp); err != nil {
		return err
	}
	p.finish(perOp, 1)
	if control != nil {
		e.logf("%s control: %d pairs of the SDK against itself", what, ops)
		if err := interleave(ctx, 0, ops, perOp, &control.Store, &control.Base, sdkOp, sdkOp); err != nil {
			return err
		}
		control.finish(perOp, 1)
	}
	return nil
}

// concurrentPair runs sz.Concurrency goroutines, each alternating a and b
// (half of them starting with each), ConcurrentWarmup then ConcurrentOps
// operations per side in all, and records each measured op's latency.
func concurrentPair(ctx context.Context, sz Sizes, p *Pair, a, b func() error) error {
	run := func(perSide int, measure bool) error {
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		per := (perSide + sz.Concurrency - 1) / sz.Concurrency
		for g := range sz.Concurrency {
			wg.Go(func() {
				var la, lb []time.Duration
				for i := range 2 * per {
					if ctx.Err() != nil {
						return
					}
					isA := (i+g)%2 == 0
					op := b
					if isA {
						op = a
					}
					t0 := time.Now()
					err := op()
					d := time.Since(t0)
					if err != nil {
						mu.Lock()
						firstErr = cmpErr(firstErr, err)
						mu.Unlock()
						return
					}
					if isA {
						la = append(la, d)
					} else {
						lb = append(lb, d)
					}
				}
				if measure {
					mu.Lock()
					p.Store.times = append(p.Store.times, la...)
					p.Base.times = append(p.Base.times, lb...)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		return ctx.Err()
	}
	if err := run(sz.ConcurrentWarmup, false); err != nil {
		return err
	}
	return run(sz.ConcurrentOps, true)
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
