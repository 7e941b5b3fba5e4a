package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Markdown renders the report as Markdown for the README: a heading, one
// table per section run, and notes saying how each figure was measured.
func (r *Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Performance\n\n")
	cmd := "`go run ./cmd/eventstore-bench`"
	if r.Sizes == QuickSizes() {
		cmd = "`go run ./cmd/eventstore-bench --quick` (small sizes: a smoke test, not figures to quote)"
	}
	w("Measured by %s on %s in %s: %s, %s, %d CPUs",
		cmd, r.Started.Format("2006-01-02"), seconds(r.Seconds), r.Emulator, r.GoVersion, r.CPUs)
	if r.OriginalPkg != "" {
		w(", the original %s on node %s", r.OriginalPkg, r.Node)
	}
	w(". Absolute rates are those of the emulator on a shared machine and say little; ")
	w("the ratios, measured side by side in the same run, are the figures to compare. ")
	w("Every table is created fresh, without a stream but for the stream source's; commits carry one event of about 270 bytes.\n")

	if o := r.Overhead; o != nil {
		w("\n### Library overhead against the bare SDK\n\n")
		w("The store's call and the same call made with the bare SDK (aws-sdk-go-v2, items decoded with `attributevalue`) run alternately, op by op, after a warm-up, on one client and one table.\n\n")
		t := table{"operation", "store commits/s", "SDK commits/s", "store/SDK", "store allocs/commit", "SDK allocs/commit", "store CPU µs/commit", "SDK CPU µs/commit"}
		for _, p := range []Pair{o.Append, o.ConcurrentAppend, o.Query, o.Scan, o.Control} {
			name := p.Name + fmt.Sprintf(", %s per side", count(p.Store.Commits))
			if p.Name == o.ConcurrentAppend.Name {
				name += " ¹"
			}
			if p.Name == o.Control.Name {
				name += " ²"
			}
			t.row(name, rate(p.Store.Rate), rate(p.Base.Rate), ratio(p.Ratio),
				optNum(p.Store.AllocsPerCommit, 1), optNum(p.Base.AllocsPerCommit, 1),
				optNum(p.Store.CPUPerCommit, 1), optNum(p.Base.CPUPerCommit, 1))
		}
		b.WriteString(t.String())
		w("\nRates are the commits of one operation over its median time: the emulator's garbage collection stalls an operation now and then, and such outliers move a mean by up to ±15%% between two runs of the same code, where the median moves by about 2%% (the JSON output has the means too). ")
		w("Allocations are counted with `runtime.MemStats` over operations run alone; CPU is this process's user and system time per commit, HTTP transport and garbage collection included.\n\n")
		w("¹ %d goroutines each alternate a store append and an SDK append; a side's rate is %d over its median latency under that mixed load. Allocations are those of one append, as in the row above.\n\n", o.Concurrency, o.Concurrency)
		w("² The same SDK query on both sides: the noise of the method, a ratio that should be 1.\n")
	}

	if o := r.Original; o != nil {
		w("\n### Against the original package\n\n")
		w("The original npm package %s (node %s, aws-sdk %s) and the Go store on the same emulator, same data, same run, interleaved round by round.\n\n", r.OriginalPkg, o.Node, o.AWSSDK)
		t := table{"operation", "Go store commits/s", "original commits/s", "Go/original"}
		for _, p := range []Pair{o.Append, o.Query, o.Scan} {
			t.row(p.Name+fmt.Sprintf(", %s per side", count(p.Store.Commits)), rate(p.Store.Rate), rate(p.Base.Rate), ratio(p.Ratio))
		}
		b.WriteString(t.String())
		w("\nRates at the median round (appends) or operation (reads), as above. Appends: rounds of %s appends a side, both sides keeping %d in flight (the original through its own `append`, timed inside node). ", count(o.Append.Store.Commits/max(o.Append.Store.Ops, 1)), o.Concurrency)
		w("Reads: the original reads only the first 1 MB page of a query, so both read data under 1 MB (%s KB for the scan, %s KB for the query), where it returns everything; the Go store reads every page. ",
			count(o.ScanBytes/1024), count(o.QueryBytes/1024))
		w("The original's read times include its driver's round trip (node's JSON.stringify of the result, a pipe, Go's decoding into raw JSON), which its users do not pay: its read rates are a little low.\n")
	}

	if wk := r.Worker; wk != nil {
		w("\n### Worker\n\n")
		w("Index source with default options unless said, in-memory checkpoints, a no-op handler.\n\n")
		t := table{"measure", "worker", "baseline", "ratio", "target"}
		c := wk.Catchup
		t.row(fmt.Sprintf("Catch-up from a backlog of %s commits (%d aggregates), to the last commit handled, median of %d rounds", count(wk.Backlog), wk.Aggregates, wk.Rounds),
			rate(c.Store.Rate)+" commits/s", "bare SDK index read "+rate(c.Base.Rate)+" commits/s", ratio(c.Ratio), "")
		t.row("Catch-up to the end of the poll that read the backlog (the sweep included)",
			rate(wk.CatchupWithSweep.Rate)+" commits/s", "same", ratio(wk.CatchupWithSweepRatio), "")
		t.row("The same backlog read from memory, no DynamoDB: the worker's own ceiling",
			fmt.Sprintf("%s commits/s, %s µs CPU/commit", rate(wk.InMemory.Rate), num(wk.InMemory.CPUPerCommit, 1)), "", "", "")
		l := wk.Live
		verdict := "met"
		if !l.Met {
			verdict = "**missed**"
		}
		t.row(fmt.Sprintf("Live lag, append → handler, %s commits/s for %s (Settle %s, PollMin %s)", num(l.Rate, 0), count(l.Commits)+" commits", millis(l.SettleMillis), millis(l.PollMinMillis)),
			fmt.Sprintf("p50 %s, p99 %s, max %s", millis(l.P50Millis), millis(l.P99Millis), millis(l.MaxMillis)), "", "",
			fmt.Sprintf("p99 ≤ Settle + PollMin + 250 ms = %s: %s", millis(l.TargetMillis), verdict))
		h := wk.Heap
		t.row(fmt.Sprintf("Peak live heap catching up %s vs %s commits", count(h.LargeBacklog), count(h.SmallBacklog)),
			mib(h.LargePeakBytes), mib(h.SmallPeakBytes), ratio(h.Ratio), fmt.Sprintf("flat (≈ 1, not %s)", ratio(float64(h.LargeBacklog)/float64(h.SmallBacklog))))
		b.WriteString(t.String())
		w("\nThe backlog's commits are an hour old, as a real backlog's are: already older than the sweep's window (`IndexOptions.Overlap`) when the fresh read finds them, so the sweep moves along with the fresh read instead of reading them again. ")
		w("The heap is the live heap as marked by the garbage collector, running at GOGC=5 for the measure and sampled every millisecond, above the live heap before the worker started; the higher of two runs.\n")
		streamMarkdown(&b, wk.Stream)
	}

	if c := r.Cost; c != nil {
		w("\n### Cost\n\n")
		w("DynamoDB requests (counted by an HTTP client wrapper, retries included) and consumed capacity (`ReturnConsumedCapacity: INDEXES`) per commit; commits of %s bytes. ", num(c.ItemBytes, 0))
		w("The minimum is what the data model needs: writing the item and its index copy (1 WCU each per KB, doubled in a transaction); reading the items once, 1 RCU per 4 KB per page strongly consistent, half that eventually consistent (the index).\n\n")
		t := table{"operation", "requests/commit", "capacity/commit (table + index)", "minimum", "ratio to minimum"}
		underReported := false
		for _, row := range []CostRow{c.Append, c.AppendAll, c.Query, c.Scan, c.WorkerCatchup} {
			split := fmt.Sprintf("%s %s (%s + %s)", num(row.Capacity, 3), row.Unit, num(row.Table, 3), num(row.Index, 3))
			if row.Name == c.WorkerCatchup.Name {
				split = fmt.Sprintf("%s %s", num(row.Capacity, 3), row.Unit)
			}
			r := ratio(row.Ratio)
			if row.Ratio < 0.5 {
				// Below what DynamoDB can bill: the emulator's report.
				r, underReported = ratio(row.Ratio)+" ²", true
			}
			t.row(row.Name, num(row.Requests, 4), split, num(row.Minimum, 3)+" "+row.Unit, r)
		}
		t.row("Worker idle (nothing appended)", fmt.Sprintf("%s requests/minute", num(c.WorkerIdleRequestsPerMinute, 1)),
			fmt.Sprintf("%s RCU/minute ³", num(c.WorkerIdleCapacityPerMinute, 2)), "", "")
		b.WriteString(t.String())
		w("\nThe worker's catch-up counts every read of the backlog (a backlog older than the sweep's window is read once); idle, it polls the fresh range and the sweep range about once every `PollMax` (2 s), measured over %s once its polling had slowed down.\n", seconds(c.WorkerIdleSeconds))
		if underReported {
			w("\n² Below the minimum DynamoDB bills: DynamoDB Local reports a transaction as 2 WCU on the table and 2 on the index whatever the number of items; DynamoDB bills 2 WCU per KB per item written in a transaction (the minimum column).\n")
		}
		if c.WorkerIdleCapacityPerMinute < 0.5*c.WorkerIdleRequestsPerMinute {
			w("\n³ As DynamoDB Local reports it: it reports 0 for a query that returns nothing, where DynamoDB bills at least 0.5 RCU, so on DynamoDB the idle worker costs at least %s RCU/minute.\n", num(0.5*c.WorkerIdleRequestsPerMinute, 1))
		} else {
			w("\n³ DynamoDB bills at least 0.5 RCU for any query of the index, even one that returns nothing.\n")
		}
	}
	return b.String()
}

// table builds a Markdown table: the header, then rows.
type table []string

func (t *table) row(cells ...string) { *t = append(*t, "\x00"+strings.Join(cells, "\x00")) }

func (t table) String() string {
	var b strings.Builder
	var header []string
	for _, c := range t {
		if strings.HasPrefix(c, "\x00") {
			break
		}
		header = append(header, c)
	}
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for i := range header {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, c := range t[len(header):] {
		cells := strings.Split(strings.TrimPrefix(c, "\x00"), "\x00")
		for len(cells) < len(header) {
			cells = append(cells, "")
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// count writes an integer with thousands separators: 20,000.
func count(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + count(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// rate writes a rate to three significant figures, with separators.
func rate(v float64) string {
	switch {
	case v >= 100:
		return count(int(math.Round(v)))
	case v >= 10:
		return num(v, 1)
	}
	return num(v, 2)
}

func num(v float64, decimals int) string {
	if decimals == 0 {
		return count(int(math.Round(v)))
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

func optNum(v float64, decimals int) string {
	if v == 0 {
		return "–"
	}
	return num(v, decimals)
}

func ratio(v float64) string { return "**" + strconv.FormatFloat(v, 'f', 2, 64) + "**" }

func millis(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 3, 64) + " s"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

func mib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

func seconds(s float64) string {
	if s >= 90 {
		return fmt.Sprintf("%d min %02d s", int(s)/60, int(s)%60)
	}
	return strconv.FormatFloat(s, 'f', 0, 64) + " s"
}

// streamMarkdown renders the Worker section's stream source subsection.
func streamMarkdown(b *strings.Builder, s StreamResult) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n#### Stream source\n\n")
	w("Two subscriptions at once on the same commits of one table with a stream (one shard on DynamoDB Local), each in a worker of its own with a DynamoDB client of its own: `SourceStream` with the default `StreamOptions`, and `SourceIndex` with the default `IndexOptions`. ")
	w("The table holds %s commits of %d aggregates first: the stream subscription reads them through the index, then the stream takes over, here %s after its start with nothing appended ", count(s.History), s.Aggregates, seconds1(s.HandoverSeconds))
	w("(its index catch-up runs with `Overlap` %s instead of 30 s: the hand-over takes about Settle + Overlap + `Margin`, 41 s with the defaults). Everything below is measured after the hand-over.\n\n", millis(s.CatchupOverlapMillis))
	verdict := "met"
	if !s.Met {
		verdict = "**missed**"
	}
	lag := func(l LagFigures) string {
		return fmt.Sprintf("p50 %s, p99 %s, max %s", millis(l.P50Millis), millis(l.P99Millis), millis(l.MaxMillis))
	}
	reqs := func(r StreamRequests, decimals int) string {
		return fmt.Sprintf("%s (GetRecords %s, DescribeStream %s, GetShardIterator %s, DynamoDB %s)",
			num(r.Total, decimals), num(r.GetRecords, decimals), num(r.DescribeStream, decimals), num(r.GetShardIterator, decimals), num(r.DynamoDB, decimals))
	}
	t := table{"measure", "stream", "index", "target"}
	t.row(fmt.Sprintf("Live lag, append → handler, %s commits/s for %s commits", num(s.Rate, 0), count(s.Commits)),
		lag(s.Stream), lag(s.Index), fmt.Sprintf("stream p99 < %s: %s", millis(s.TargetMillis), verdict))
	t.row("Lag to the GetRecords response that carried the commit", fmt.Sprintf("p50 %s, p99 %s", millis(s.Read.P50Millis), millis(s.Read.P99Millis)), "", "")
	t.row(fmt.Sprintf("Requests per commit delivered, at %s commits/s", num(s.Rate, 0)), reqs(s.PerCommit, 4), num(s.IndexPerCommit, 4)+" (DynamoDB)", "")
	t.row(fmt.Sprintf("Requests per minute, idle (%s measured)", seconds1(s.IdleSeconds)), reqs(s.IdlePerMinute, 1), num(s.IndexIdlePerMinute, 1)+" (DynamoDB)", "")
	t.row("Checkpoint saves per minute, idle ¹", num(s.IdleCheckpointsPerMinute, 1), num(s.IndexIdleCheckpointsPerMinute, 1), "")
	b.WriteString(t.String())
	w("\nStream calls are counted by a wrapper of `subscribe.StreamsAPI`, DynamoDB requests (index catch-up, gap repairs, DescribeTable) by the HTTP client wrapper, retries included. ")
	w("The stream reader calls GetRecords at most every 250 ms on a shard whose last call returned records, backs off to `StreamOptions.IdleMax` (1 s) on one that returned none, and lists the shards (DescribeStream) every 10 s: the stream's lag is mostly a record's wait for the next GetRecords call. ")
	w("The index source's lag is mostly `Settle` (1 s).")
	if s.GapRepairs > 0 || s.Duplicates > 0 {
		w(" In the measured window the stream subscription repaired %d gaps and dropped %d duplicates.", s.GapRepairs, s.Duplicates)
	}
	w("\n\n¹ In memory here; with `dynamocheckpoint` each save is an UpdateItem (1 WCU).")
	if s.IdleCheckpointsPerMinute > s.IndexIdleCheckpointsPerMinute {
		w(" The stream checkpoint records the time it was taken (its resume time), so it changes, and is saved, every `CheckpointInterval` (1 s) even while nothing happens; the index checkpoint changes only when commits are read.")
	}
	w("\n")
}

// seconds1 writes a duration in seconds with one decimal.
func seconds1(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + " s" }
