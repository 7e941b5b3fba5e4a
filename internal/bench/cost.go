package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// CostResult is section 4: DynamoDB requests and consumed capacity per
// commit (from ReturnConsumedCapacity INDEXES and an HTTP client that counts
// requests), against the minimum the data model allows.
type CostResult struct {
	// ItemBytes is the mean size of a commit's item as DynamoDB bills it.
	ItemBytes float64 `json:"itemBytes"`
	// Append: single appends, one conditional PutItem each.
	Append CostRow `json:"append"`
	// AppendAll: transactions of 100 commits.
	AppendAll CostRow `json:"appendAll"`
	// Query: one aggregate's commits, strongly consistent.
	Query CostRow `json:"query"`
	// Scan: the commit-order index, eventually consistent.
	Scan CostRow `json:"scan"`
	// WorkerCatchup: the worker reading a backlog, from its start to the
	// end of the poll that read the last commit (fresh read and sweep).
	WorkerCatchup CostRow `json:"workerCatchup"`
	// WorkerIdleRequestsPerMinute is the worker's requests per minute on a
	// table where nothing happens, measured over WorkerIdleSeconds after
	// its polling slowed down; WorkerIdleCapacityPerMinute the capacity
	// they consumed.
	WorkerIdleRequestsPerMinute float64 `json:"workerIdleRequestsPerMinute"`
	WorkerIdleCapacityPerMinute float64 `json:"workerIdleCapacityPerMinute"`
	WorkerIdleSeconds           float64 `json:"workerIdleSeconds"`
}

// CostRow is the cost of one operation per commit.
type CostRow struct {
	Name string `json:"name"`
	// Commits is how many commits were written or read.
	Commits int `json:"commits"`
	// Requests is DynamoDB requests per commit.
	Requests float64 `json:"requestsPerCommit"`
	// Capacity is capacity units per commit (write units for writes, read
	// units for reads), table and indexes; Table and Index split it.
	Capacity float64 `json:"capacityPerCommit"`
	Table    float64 `json:"tableCapacityPerCommit"`
	Index    float64 `json:"indexCapacityPerCommit"`
	// Minimum is the capacity per commit the data model allows for this
	// operation, and Ratio is Capacity / Minimum.
	Minimum float64 `json:"minimumPerCommit"`
	Ratio   float64 `json:"ratio"`
	// Unit is "WCU" or "RCU".
	Unit string `json:"unit"`
}

func (r *CostRow) finish(requests int64, c capacitySum) {
	n := float64(r.Commits)
	r.Requests = float64(requests) / n
	r.Capacity, r.Table, r.Index = c.total/n, c.table/n, c.index/n
	if r.Minimum > 0 {
		r.Ratio = r.Capacity / r.Minimum
	}
}

// capacitySum is consumed capacity, in capacity units: in all, on the
// table, on its indexes.
type capacitySum struct{ total, table, index float64 }

func (c capacitySum) minus(d capacitySum) capacitySum {
	return capacitySum{total: c.total - d.total, table: c.table - d.table, index: c.index - d.index}
}

// capacityTotals adds up consumed capacity. It is safe for concurrent use.
type capacityTotals struct {
	mu sync.Mutex
	capacitySum
}

func (c *capacityTotals) add(_ store.Operation, cc types.ConsumedCapacity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += units(cc)
	if cc.Table != nil {
		c.table += aws.ToFloat64(cc.Table.CapacityUnits)
	}
	for _, ix := range cc.GlobalSecondaryIndexes {
		c.index += aws.ToFloat64(ix.CapacityUnits)
	}
}

func (c *capacityTotals) snapshot() capacitySum {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.capacitySum
}

// units returns the capacity units a call consumed, table and indexes.
func units(cc types.ConsumedCapacity) float64 {
	if cc.CapacityUnits != nil {
		return *cc.CapacityUnits
	}
	u := 0.0
	if cc.Table != nil {
		u += aws.ToFloat64(cc.Table.CapacityUnits)
	}
	for _, ix := range cc.GlobalSecondaryIndexes {
		u += aws.ToFloat64(ix.CapacityUnits)
	}
	return u
}

// costed is a store whose requests are counted and whose consumed capacity
// is added up.
type costed struct {
	s        *store.Store
	requests *requestCounter
	capacity *capacityTotals
}

func (e *env) costed(ctx context.Context, cfg store.Config) (*costed, error) {
	client, rc, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	c := &costed{requests: rc, capacity: &capacityTotals{}}
	cfg.ConsumedCapacity = c.capacity.add
	if c.s, err = store.New(client, cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// measure runs f and fills row from the requests and capacity it used.
func (c *costed) measure(row *CostRow, f func() error) error {
	r0, c0 := c.requests.Total(), c.capacity.snapshot()
	if err := f(); err != nil {
		return err
	}
	row.finish(c.requests.Total()-r0, c.capacity.snapshot().minus(c0))
	return nil
}

// writeUnits is the write capacity of an item of b bytes: 1 unit per KB.
func writeUnits(b int) float64 { return math.Ceil(float64(b) / 1024) }

// readUnits is the read capacity of reading b bytes in one page, strongly
// consistent: 1 unit per 4 KB.
func readUnits(b int) float64 { return math.Ceil(float64(b) / 4096) }

func cost(ctx context.Context, e *env, sz Sizes) (*CostResult, error) {
	admin, _, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	res := &CostResult{}

	// Writes.
	cfg, drop, err := e.table(ctx, admin, "cost-write")
	if err != nil {
		return nil, err
	}
	defer drop()
	w, err := e.costed(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e.logf("cost: %d appends, %d transactions", sz.CostAppends, sz.CostTransactions)
	res.Append = CostRow{Name: "Append (one conditional PutItem)", Commits: sz.CostAppends, Unit: "WCU"}
	if err := w.measure(&res.Append, func() error {
		for i := range sz.CostAppends {
			if _, err := w.s.Append(ctx, store.Commit{AggregateID: "w-" + strconv.Itoa(i), Events: events}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	res.AppendAll = CostRow{Name: "AppendAll (transactions of 100)", Commits: sz.CostTransactions * store.MaxTransactionCommits, Unit: "WCU"}
	if err := w.measure(&res.AppendAll, func() error {
		for t := range sz.CostTransactions {
			batch := make([]store.Commit, store.MaxTransactionCommits)
			for i := range batch {
				batch[i] = store.Commit{AggregateID: fmt.Sprintf("t%d-%d", t, i), Events: events}
			}
			if _, err := w.s.AppendAll(ctx, batch...); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	sizes, err := itemSizes(ctx, admin, sdkScanInput(cfg.TableName))
	if err != nil {
		return nil, err
	}
	if len(sizes) != res.Append.Commits+res.AppendAll.Commits {
		return nil, fmt.Errorf("bench: cost: the table holds %d commits, want %d", len(sizes), res.Append.Commits+res.AppendAll.Commits)
	}
	// The minimum: the item, and its copy in the index.
	var minWrite float64
	sum := 0
	for _, b := range sizes {
		minWrite += 2 * writeUnits(b)
		sum += b
	}
	res.ItemBytes = float64(sum) / float64(len(sizes))
	res.Append.Minimum = minWrite / float64(len(sizes))
	res.AppendAll.Minimum = 2 * res.Append.Minimum // transactions cost double
	for _, r := range []*CostRow{&res.Append, &res.AppendAll} {
		r.Ratio = r.Capacity / r.Minimum
	}
	drop()

	// Reads: an aggregate of QueryCommits commits, and the index over
	// ScanCommits commits.
	rcfg, dropR, err := e.table(ctx, admin, "cost-read")
	if err != nil {
		return nil, err
	}
	defer dropR()
	r, err := e.costed(ctx, rcfg)
	if err != nil {
		return nil, err
	}
	rest := max(sz.ScanCommits-sz.QueryCommits, 0)
	aggs := max(rest/10, 1) // 10 commits each
	if err := loadOne(ctx, r.s, "q", sz.QueryCommits); err != nil {
		return nil, err
	}
	if err := load(ctx, r.s, ids("a", aggs), rest/aggs); err != nil {
		return nil, err
	}
	total := sz.QueryCommits + aggs*(rest/aggs)
	qsizes, err := itemSizes(ctx, admin, sdkQueryInput(rcfg.TableName, "q"))
	if err != nil {
		return nil, err
	}
	ssizes, err := itemSizes(ctx, admin, sdkScanInput(rcfg.TableName))
	if err != nil {
		return nil, err
	}
	e.logf("cost: %d queries, %d scans", sz.CostQueryOps, sz.CostScanOps)
	res.Query = CostRow{Name: fmt.Sprintf("Query (%s commits, consistent)", count(sz.QueryCommits)), Commits: sz.CostQueryOps * sz.QueryCommits, Unit: "RCU",
		Minimum: pageReadUnits(qsizes, 1) / float64(len(qsizes))}
	if err := r.measure(&res.Query, func() error {
		for range sz.CostQueryOps {
			if err := drain(r.s.Query(ctx, "q", 0), sz.QueryCommits); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	res.Scan = CostRow{Name: fmt.Sprintf("Scan (index, %s commits, eventually consistent)", count(total)), Commits: sz.CostScanOps * total, Unit: "RCU",
		Minimum: pageReadUnits(ssizes, 0.5) / float64(len(ssizes))}
	if err := r.measure(&res.Scan, func() error {
		for range sz.CostScanOps {
			if err := drain(r.s.Scan(ctx, store.Position{}), total); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	dropR()

	// The worker: catching up on a backlog, then idle.
	bcfg, dropB, err := e.table(ctx, admin, "cost-worker")
	if err != nil {
		return nil, err
	}
	defer dropB()
	n, err := loadBacklog(ctx, admin, bcfg, sz.CostBacklog, sz.BacklogAggregates)
	if err != nil {
		return nil, err
	}
	bsizes, err := itemSizes(ctx, admin, sdkScanInput(bcfg.TableName))
	if err != nil {
		return nil, err
	}
	wc, err := e.costed(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	e.logf("cost: the worker catching up on %d commits, then idle for %v + %v", n, sz.IdleWarmup, sz.IdleDuration)
	p := newProbe(int64(n), wc.requests)
	p.capacity = func() float64 { return wc.capacity.snapshot().total }
	rw, err := startWorker(ctx, wc.s, p, subscribe.IndexOptions{})
	if err != nil {
		return nil, err
	}
	defer func() { _ = rw.stop() }()
	if err := p.wait(ctx, 5*time.Minute); err != nil {
		return nil, err
	}
	res.WorkerCatchup = CostRow{Name: fmt.Sprintf("Worker catch-up (%s commits)", count(n)), Commits: n, Unit: "RCU",
		Minimum: pageReadUnits(bsizes, 0.5) / float64(len(bsizes))}
	res.WorkerCatchup.Requests = float64(p.requestsAtPoll) / float64(n)
	res.WorkerCatchup.Capacity = p.capacityAtPoll / float64(n)
	res.WorkerCatchup.Ratio = res.WorkerCatchup.Capacity / res.WorkerCatchup.Minimum

	if !sleepCtx(ctx, sz.IdleWarmup) {
		return nil, ctx.Err()
	}
	r0, c0 := wc.requests.Total(), p.capacity()
	t0 := time.Now()
	if !sleepCtx(ctx, sz.IdleDuration) {
		return nil, ctx.Err()
	}
	d := time.Since(t0)
	r1, c1 := wc.requests.Total(), p.capacity()
	if err := rw.stop(); err != nil {
		return nil, err
	}
	res.WorkerIdleSeconds = d.Seconds()
	res.WorkerIdleRequestsPerMinute = float64(r1-r0) / d.Minutes()
	res.WorkerIdleCapacityPerMinute = (c1 - c0) / d.Minutes()
	return res, nil
}

// pageReadUnits is the read capacity of reading items of the given sizes in
// as few pages as the 1 MB page limit allows, at factor units per 4 KB (1
// strongly consistent, 0.5 eventually).
func pageReadUnits(sizes []int, factor float64) float64 {
	u, page := 0.0, 0
	for _, b := range sizes {
		if page+b > 1<<20 {
			u += readUnits(page)
			page = 0
		}
		page += b
	}
	return factor * (u + readUnits(page))
}

// itemSizes returns the billed size of every item a query returns, reading
// every page.
func itemSizes(ctx context.Context, client *dynamodb.Client, in *dynamodb.QueryInput) ([]int, error) {
	var out []int
	p := dynamodb.NewQueryPaginator(client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		for _, it := range page.Items {
			out = append(out, itemBytes(it))
		}
	}
	return out, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
