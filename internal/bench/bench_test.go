package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

func TestMain(m *testing.M) { ddbtest.Main(m) }

// testLog passes progress lines to t.Log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestQuickRun runs every section at QuickSizes against DynamoDB Local and
// checks that every figure is there and positive, and that the Markdown
// shows each section.
func TestQuickRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	r, err := Run(ctx, Config{Endpoint: ddbtest.Endpoint(t), Sizes: QuickSizes(), Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("quick run took %v", time.Since(t0).Round(time.Millisecond))
	if r.Overhead == nil || r.Original == nil || r.Worker == nil || r.Cost == nil {
		t.Fatalf("a section is missing: %+v", r)
	}

	var missing []string
	positive := func(path string, v float64) {
		if !(v > 0) {
			missing = append(missing, fmt.Sprintf("%s = %v", path, v))
		}
	}
	pair := func(path string, p Pair, allocs, cpu bool) {
		positive(path+".Ratio", p.Ratio)
		for side, s := range map[string]Side{"Store": p.Store, "Base": p.Base} {
			positive(path+"."+side+".Rate", s.Rate)
			positive(path+"."+side+".Commits", float64(s.Commits))
			if allocs {
				positive(path+"."+side+".AllocsPerCommit", s.AllocsPerCommit)
			}
			if cpu {
				positive(path+"."+side+".CPUPerCommit", s.CPUPerCommit)
			}
		}
	}
	o := r.Overhead
	pair("Overhead.Append", o.Append, true, true)
	pair("Overhead.ConcurrentAppend", o.ConcurrentAppend, true, false)
	pair("Overhead.Query", o.Query, true, true)
	pair("Overhead.Scan", o.Scan, true, true)
	pair("Overhead.Control", o.Control, false, true)

	g := r.Original
	pair("Original.Append", g.Append, false, false)
	pair("Original.Query", g.Query, false, false)
	pair("Original.Scan", g.Scan, false, false)
	positive("Original.QueryBytes", float64(g.QueryBytes))
	positive("Original.ScanBytes", float64(g.ScanBytes))
	if g.Node == "" {
		missing = append(missing, "Original.Node is empty")
	}

	w := r.Worker
	pair("Worker.Catchup", w.Catchup, false, false)
	positive("Worker.CatchupWithSweep.Rate", w.CatchupWithSweep.Rate)
	positive("Worker.CatchupWithSweepRatio", w.CatchupWithSweepRatio)
	positive("Worker.InMemory.Rate", w.InMemory.Rate)
	positive("Worker.InMemory.CPUPerCommit", w.InMemory.CPUPerCommit)
	positive("Worker.Live.Rate", w.Live.Rate)
	positive("Worker.Live.Commits", float64(w.Live.Commits))
	positive("Worker.Live.P50Millis", w.Live.P50Millis)
	positive("Worker.Live.P99Millis", w.Live.P99Millis)
	positive("Worker.Live.MaxMillis", w.Live.MaxMillis)
	positive("Worker.Live.TargetMillis", w.Live.TargetMillis)
	positive("Worker.Heap.SmallPeakBytes", float64(w.Heap.SmallPeakBytes))
	positive("Worker.Heap.LargePeakBytes", float64(w.Heap.LargePeakBytes))
	positive("Worker.Heap.Ratio", w.Heap.Ratio)
	if w.Live.P99Millis < w.Live.P50Millis || w.Live.MaxMillis < w.Live.P99Millis {
		missing = append(missing, fmt.Sprintf("Worker.Live percentiles out of order: %+v", w.Live))
	}
	// A commit cannot reach the handler before the settle watermark passes it.
	if w.Live.P50Millis < w.Live.SettleMillis {
		missing = append(missing, fmt.Sprintf("Worker.Live.P50Millis %v is below Settle %v", w.Live.P50Millis, w.Live.SettleMillis))
	}
	st := w.Stream
	positive("Worker.Stream.HandoverSeconds", st.HandoverSeconds)
	positive("Worker.Stream.Rate", st.Rate)
	positive("Worker.Stream.Commits", float64(st.Commits))
	positive("Worker.Stream.TargetMillis", st.TargetMillis)
	for name, l := range map[string]LagFigures{"Stream": st.Stream, "Index": st.Index, "Read": st.Read} {
		positive("Worker.Stream."+name+".P50Millis", l.P50Millis)
		positive("Worker.Stream."+name+".P99Millis", l.P99Millis)
		positive("Worker.Stream."+name+".MaxMillis", l.MaxMillis)
		if l.P99Millis < l.P50Millis || l.MaxMillis < l.P99Millis {
			missing = append(missing, fmt.Sprintf("Worker.Stream.%s percentiles out of order: %+v", name, l))
		}
	}
	positive("Worker.Stream.PerCommit.GetRecords", st.PerCommit.GetRecords)
	positive("Worker.Stream.PerCommit.Total", st.PerCommit.Total)
	positive("Worker.Stream.IndexPerCommit", st.IndexPerCommit)
	positive("Worker.Stream.IdlePerMinute.GetRecords", st.IdlePerMinute.GetRecords)
	positive("Worker.Stream.IdlePerMinute.Total", st.IdlePerMinute.Total)
	positive("Worker.Stream.IndexIdlePerMinute", st.IndexIdlePerMinute)
	positive("Worker.Stream.IdleSeconds", st.IdleSeconds)
	// The handler sees a commit after the response that carried it.
	if st.Stream.P50Millis < st.Read.P50Millis {
		missing = append(missing, fmt.Sprintf("Worker.Stream.Stream.P50Millis %v is below Read.P50Millis %v", st.Stream.P50Millis, st.Read.P50Millis))
	}

	c := r.Cost
	positive("Cost.ItemBytes", c.ItemBytes)
	for name, row := range map[string]CostRow{"Append": c.Append, "AppendAll": c.AppendAll, "Query": c.Query, "Scan": c.Scan, "WorkerCatchup": c.WorkerCatchup} {
		positive("Cost."+name+".Requests", row.Requests)
		positive("Cost."+name+".Capacity", row.Capacity)
		positive("Cost."+name+".Minimum", row.Minimum)
		positive("Cost."+name+".Ratio", row.Ratio)
	}
	positive("Cost.WorkerIdleRequestsPerMinute", c.WorkerIdleRequestsPerMinute)
	positive("Cost.WorkerIdleSeconds", c.WorkerIdleSeconds)
	// One PutItem per append, whatever else is measured.
	if c.Append.Requests != 1 {
		missing = append(missing, fmt.Sprintf("Cost.Append.Requests = %v, want 1", c.Append.Requests))
	}
	if len(missing) > 0 {
		t.Fatalf("figures missing or not positive:\n  %s", strings.Join(missing, "\n  "))
	}

	md := r.Markdown()
	for _, want := range []string{"## Performance", "### Library overhead", "### Against the original package", "### Worker", "#### Stream source", "### Cost"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "NaN") || strings.Contains(md, "Inf") {
		t.Errorf("Markdown shows a NaN or Inf:\n%s", md)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("the report does not marshal: %v", err)
	}
	t.Logf("\n%s", md)
}

func TestParseSections(t *testing.T) {
	cases := []struct {
		in   string
		want []Section
		err  bool
	}{
		{in: "", want: Sections},
		{in: "overhead", want: []Section{SectionOverhead}},
		{in: "worker, 1", want: []Section{SectionWorker, SectionOverhead}},
		{in: "4,cost", want: []Section{SectionCost}},
		{in: "ORIGINAL", want: []Section{SectionOriginal}},
		{in: "5", err: true},
		{in: "speed", err: true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseSections(c.in)
			if (err != nil) != c.err {
				t.Fatalf("error = %v, want error %v", err, c.err)
			}
			if !c.err && !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestRunNeedsEndpointAndSizes(t *testing.T) {
	if _, err := Run(t.Context(), Config{Sizes: QuickSizes()}); err == nil {
		t.Error("Run without an endpoint succeeded")
	}
	if _, err := Run(t.Context(), Config{Endpoint: "http://127.0.0.1:1"}); err == nil {
		t.Error("Run without sizes succeeded")
	}
}

func TestSizesAreAllSet(t *testing.T) {
	for name, sz := range map[string]Sizes{"default": DefaultSizes(), "quick": QuickSizes()} {
		v := reflect.ValueOf(sz)
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.Name == "IdleWarmup" && name == "quick" {
				continue // the quick run measures idle polling from the start
			}
			if v.Field(i).IsZero() {
				t.Errorf("%s sizes: %s is zero", name, f.Name)
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v", got)
	}
}

func TestTableAndNumbers(t *testing.T) {
	tb := table{"a", "b"}
	tb.row("x", "1")
	tb.row("y")
	want := "| a | b |\n|---|---:|\n| x | 1 |\n| y |  |\n"
	if got := tb.String(); got != want {
		t.Errorf("table:\n%q\nwant\n%q", got, want)
	}
	for in, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -2500: "-2,500"} {
		if got := count(in); got != want {
			t.Errorf("count(%d) = %q, want %q", in, got, want)
		}
	}
}
