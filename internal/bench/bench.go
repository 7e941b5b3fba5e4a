package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
	"github.com/dynamodb-event-store/eventstore/internal/original"
)

// Section names one part of the benchmark.
type Section string

// The sections, in the order Run runs them.
const (
	SectionOverhead Section = "overhead" // 1: the store against the bare SDK
	SectionOriginal Section = "original" // 2: the store against the original npm package
	SectionWorker   Section = "worker"   // 3: the subscription worker
	SectionCost     Section = "cost"     // 4: requests and capacity per commit
)

// Sections lists every section in the order Run runs them.
var Sections = []Section{SectionOverhead, SectionOriginal, SectionWorker, SectionCost}

// ParseSections reads a comma-separated list of section names or numbers
// (1 to 4), e.g. "overhead,worker" or "1,3". An empty list means all.
func ParseSections(s string) ([]Section, error) {
	if strings.TrimSpace(s) == "" {
		return slices.Clone(Sections), nil
	}
	var out []Section
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		var sec Section
		for i, x := range Sections {
			if f == string(x) || f == fmt.Sprint(i+1) {
				sec = x
			}
		}
		if sec == "" {
			return nil, fmt.Errorf("bench: unknown section %q: want %s or 1 to %d", f, joinSections(Sections), len(Sections))
		}
		if !slices.Contains(out, sec) {
			out = append(out, sec)
		}
	}
	return out, nil
}

func joinSections(ss []Section) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Sizes sets how much each section does. Counts are commits or operations
// per side; durations are wall time.
type Sizes struct {
	// Section 1.

	// AppendWarmup and AppendOps: single appends per side, first unmeasured
	// then measured, interleaved op by op.
	AppendWarmup int `json:"appendWarmup"`
	AppendOps    int `json:"appendOps"`
	// QueryCommits is the length of the aggregate read by Query;
	// QueryWarmup and QueryOps are reads per side.
	QueryCommits int `json:"queryCommits"`
	QueryWarmup  int `json:"queryWarmup"`
	QueryOps     int `json:"queryOps"`
	// ScanCommits is the number of commits Scan reads from the index;
	// ScanWarmup and ScanOps are scans per side.
	ScanCommits int `json:"scanCommits"`
	ScanWarmup  int `json:"scanWarmup"`
	ScanOps     int `json:"scanOps"`
	// Concurrency is the number of appends in flight in the concurrent
	// append measure; ConcurrentWarmup and ConcurrentOps are appends per
	// side.
	Concurrency      int `json:"concurrency"`
	ConcurrentWarmup int `json:"concurrentWarmup"`
	ConcurrentOps    int `json:"concurrentOps"`
	// AllocRuns is how many operations each allocation count averages.
	AllocRuns int `json:"allocRuns"`

	// Section 2.

	// OriginalConcurrency is the appends in flight on each side;
	// OriginalRounds rounds of OriginalAppends appends per side follow one
	// unmeasured round.
	OriginalConcurrency int `json:"originalConcurrency"`
	OriginalRounds      int `json:"originalRounds"`
	OriginalAppends     int `json:"originalAppends"`
	// OriginalReadOps is the queries and the scans per side, after
	// OriginalReadWarmup of each. The query reads QueryCommits commits;
	// the scan reads OriginalScanCommits (under the original's 1 MB page).
	OriginalReadWarmup  int `json:"originalReadWarmup"`
	OriginalReadOps     int `json:"originalReadOps"`
	OriginalScanCommits int `json:"originalScanCommits"`

	// Section 3.

	// Backlog commits over BacklogAggregates aggregates are caught up
	// CatchupRounds times, each round interleaved with a bare SDK read of
	// the same backlog.
	Backlog           int `json:"backlog"`
	BacklogAggregates int `json:"backlogAggregates"`
	CatchupRounds     int `json:"catchupRounds"`
	// LiveRate commits per second are appended for LiveWarmup, unmeasured,
	// then for LiveDuration, measured.
	LiveRate     int           `json:"liveRate"`
	LiveWarmup   time.Duration `json:"liveWarmup"`
	LiveDuration time.Duration `json:"liveDuration"`
	// The stream source beside the index source: once the stream has taken
	// over, both idle for StreamIdle (measured), then LiveRate commits per
	// second are appended for LiveWarmup, unmeasured, then for
	// StreamDuration, measured.
	StreamIdle     time.Duration `json:"streamIdle"`
	StreamDuration time.Duration `json:"streamDuration"`
	// HeapBacklog is the larger backlog whose peak heap is compared with
	// that of Backlog.
	HeapBacklog int `json:"heapBacklog"`

	// Section 4.

	// CostAppends single appends, CostTransactions transactions of 100
	// commits, CostQueryOps queries of QueryCommits commits and CostScanOps
	// scans of ScanCommits commits are costed; the worker catches up on
	// CostBacklog commits, then idles IdleWarmup (unmeasured, for its
	// polling to slow down to PollMax) and IdleDuration (measured).
	CostAppends      int           `json:"costAppends"`
	CostTransactions int           `json:"costTransactions"`
	CostQueryOps     int           `json:"costQueryOps"`
	CostScanOps      int           `json:"costScanOps"`
	CostBacklog      int           `json:"costBacklog"`
	IdleWarmup       time.Duration `json:"idleWarmup"`
	IdleDuration     time.Duration `json:"idleDuration"`
}

// DefaultSizes takes about three minutes on a two-core machine.
func DefaultSizes() Sizes {
	return Sizes{
		AppendWarmup: 300, AppendOps: 2000,
		QueryCommits: 200, QueryWarmup: 50, QueryOps: 600,
		ScanCommits: 2000, ScanWarmup: 10, ScanOps: 150,
		Concurrency: 16, ConcurrentWarmup: 500, ConcurrentOps: 4000,
		AllocRuns: 10,

		OriginalConcurrency: 16, OriginalRounds: 10, OriginalAppends: 500,
		OriginalReadWarmup: 20, OriginalReadOps: 200, OriginalScanCommits: 2000,

		Backlog: 5000, BacklogAggregates: 100, CatchupRounds: 11,
		LiveRate: 100, LiveWarmup: 3 * time.Second, LiveDuration: 10 * time.Second,
		HeapBacklog: 20000, StreamIdle: 20 * time.Second, StreamDuration: 10 * time.Second,

		CostAppends: 200, CostTransactions: 5, CostQueryOps: 10, CostScanOps: 5, CostBacklog: 2000,
		IdleWarmup: 6 * time.Second, IdleDuration: 30 * time.Second,
	}
}

// QuickSizes finishes in well under a minute: enough to check that every
// figure comes out, not to be quoted.
func QuickSizes() Sizes {
	return Sizes{
		AppendWarmup: 20, AppendOps: 60,
		QueryCommits: 200, QueryWarmup: 3, QueryOps: 8,
		ScanCommits: 400, ScanWarmup: 1, ScanOps: 4,
		Concurrency: 16, ConcurrentWarmup: 32, ConcurrentOps: 160,
		AllocRuns: 3,

		OriginalConcurrency: 8, OriginalRounds: 2, OriginalAppends: 60,
		OriginalReadWarmup: 2, OriginalReadOps: 6, OriginalScanCommits: 400,

		Backlog: 400, BacklogAggregates: 20, CatchupRounds: 2,
		LiveRate: 50, LiveWarmup: time.Second, LiveDuration: 2 * time.Second,
		HeapBacklog: 1200, StreamIdle: 3 * time.Second, StreamDuration: 2 * time.Second,

		CostAppends: 20, CostTransactions: 1, CostQueryOps: 2, CostScanOps: 2, CostBacklog: 300,
		IdleWarmup: 0, IdleDuration: 2 * time.Second,
	}
}

// Config configures Run.
type Config struct {
	// Endpoint is the DynamoDB endpoint, e.g. DynamoDB Local's
	// "http://127.0.0.1:8000". Required.
	Endpoint string
	// Sizes sets how much each section does. Required (see DefaultSizes
	// and QuickSizes).
	Sizes Sizes
	// Sections to run. Default: all.
	Sections []Section
	// Log receives progress lines. Nil means silent.
	Log io.Writer
	// OriginalCacheDir is where the original package is installed (see
	// original.Options.CacheDir). Default: that package's default.
	OriginalCacheDir string
}

// Report is everything one Run measured. A section not run is nil.
type Report struct {
	// Started is when the run began; Seconds how long it took.
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	// Environment.
	GoVersion   string `json:"goVersion"`
	CPUs        int    `json:"cpus"`
	Emulator    string `json:"emulator"`
	Endpoint    string `json:"endpoint"`
	Sizes       Sizes  `json:"sizes"`
	OriginalPkg string `json:"originalPackage,omitempty"`
	Node        string `json:"node,omitempty"`

	Overhead *OverheadResult `json:"overhead,omitempty"`
	Original *OriginalResult `json:"original,omitempty"`
	Worker   *WorkerResult   `json:"worker,omitempty"`
	Cost     *CostResult     `json:"cost,omitempty"`
}

// Run runs the sections cfg selects, one after the other, and returns what
// they measured. It stops at the first error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("bench: Config.Endpoint is required")
	}
	if cfg.Sizes == (Sizes{}) {
		return nil, errors.New("bench: Config.Sizes is required")
	}
	sections := cfg.Sections
	if len(sections) == 0 {
		sections = Sections
	}
	logf := func(string, ...any) {}
	if cfg.Log != nil {
		logf = func(format string, args ...any) {
			fmt.Fprintf(cfg.Log, "bench: "+format+"\n", args...)
		}
	}
	e := newEnv(cfg.Endpoint, logf)
	r := &Report{
		Started:   time.Now().UTC(),
		GoVersion: runtime.Version(),
		CPUs:      runtime.NumCPU(),
		Emulator:  "DynamoDB Local from npm " + dynamolocal.NpmPackage,
		Endpoint:  cfg.Endpoint,
		Sizes:     cfg.Sizes,
	}
	for _, sec := range sections {
		t0 := time.Now()
		logf("section %s…", sec)
		var err error
		switch sec {
		case SectionOverhead:
			r.Overhead, err = overhead(ctx, e, cfg.Sizes)
		case SectionOriginal:
			r.Original, err = originalSection(ctx, e, cfg.Sizes, cfg.OriginalCacheDir)
			if r.Original != nil {
				r.OriginalPkg, r.Node = original.Package, r.Original.Node
			}
		case SectionWorker:
			r.Worker, err = worker(ctx, e, cfg.Sizes)
		case SectionCost:
			r.Cost, err = cost(ctx, e, cfg.Sizes)
		default:
			err = fmt.Errorf("bench: unknown section %q", sec)
		}
		if err != nil {
			return r, fmt.Errorf("section %s: %w", sec, err)
		}
		logf("section %s done in %v", sec, time.Since(t0).Round(100*time.Millisecond))
	}
	r.Seconds = time.Since(r.Started).Seconds()
	return r, nil
}
