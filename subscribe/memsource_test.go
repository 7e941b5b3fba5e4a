package subscribe

import (
	"context"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// memCommits is a fixed sequence of pre-built commits over many aggregates,
// in global commit order: commit i is version i/aggregates of aggregate
// i%aggregates, so each aggregate's versions come in ascending order with no
// gap. It is read-only once built and may be shared by many memSources.
type memCommits struct {
	commits []Commit
	aggs    int
	aggIdx  map[string]int // aggregate id → i%aggregates
}

// newMemCommits builds n commits over aggregates aggregates, each carrying
// events, with commit ids ten commits per millisecond from a fixed instant.
func newMemCommits(n, aggregates int, events []byte) *memCommits {
	m := &memCommits{commits: make([]Commit, n), aggs: aggregates, aggIdx: make(map[string]int, aggregates)}
	ids := make([]string, aggregates)
	for a := range ids {
		ids[a] = fmt.Sprintf("mem-%06d", a)
		m.aggIdx[ids[a]] = a
	}
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range m.commits {
		id, at := ids[i%aggregates], base+int64(i/10)
		m.commits[i] = Commit{
			CommitID: store.FormatCommitID(at, id), CommittedAt: at,
			AggregateID: id, Version: int64(i / aggregates), Events: events,
		}
	}
	return m
}

// index returns c's place in the sequence.
func (m *memCommits) index(c Commit) int { return int(c.Version)*m.aggs + m.aggIdx[c.AggregateID] }

// memSource is a source (see index.go) that emits a memCommits sequence from
// memory as fast as the dispatcher takes it, so that a benchmark measures
// the worker and not DynamoDB. Its checkpoint is the decimal index of the
// first commit not handled: every commit before it is handled, so a restart
// from it loses nothing. Once every commit is emitted, run waits for ctx.
type memSource struct {
	m       *memCommits
	keep    func(Commit) bool // the commits it emits; nil: all
	start   int               // first index this source emits
	handled []atomic.Bool     // by index
	emitted atomic.Int64      // commits emitted (or being emitted) from start on
	count   atomic.Int64      // commits handled from start on
	all     chan struct{}     // closed once every commit from start on is handled

	mu       sync.Mutex
	frontier int // every commit before it is handled
}

var _ source = (*memSource)(nil)

// newMemSource returns a source that resumes from saved, a checkpoint of
// another memSource over the same commits ("" starts at the beginning).
func newMemSource(m *memCommits, saved string) (*memSource, error) {
	return newMemSourceOf(m, saved, nil)
}

// newMemSourceOf is newMemSource for the commits keep keeps (nil: all),
// as a unit's source emits its bucket's: the others count as handled.
func newMemSourceOf(m *memCommits, saved string, keep func(Commit) bool) (*memSource, error) {
	start := 0
	if saved != "" {
		var err error
		if start, err = strconv.Atoi(saved); err != nil || start < 0 || start > len(m.commits) {
			return nil, fmt.Errorf("memsource: checkpoint %q is not an index from 0 to %d", saved, len(m.commits))
		}
	}
	s := &memSource{m: m, keep: keep, start: start, handled: make([]atomic.Bool, len(m.commits)), all: make(chan struct{}), frontier: start}
	for i, c := range m.commits {
		if keep != nil && !keep(c) {
			s.handled[i].Store(true)
			if i >= start { // emitted and handled, as far as lag counts
				s.emitted.Add(1)
				s.count.Add(1)
			}
		}
	}
	if s.count.Load() == int64(len(m.commits)-start) {
		close(s.all)
	}
	return s, nil
}

// memSourceFactory plugs a new memSource over m into Worker.sourceFactory; each
// source created is also sent on made, if it is not nil.
func memSourceFactory(m *memCommits, made chan<- *memSource) func(*unit, string) (source, error) {
	return func(_ *unit, saved string) (source, error) {
		s, err := newMemSource(m, saved)
		if err == nil && made != nil {
			made <- s
		}
		return s, err
	}
}

func (s *memSource) run(ctx context.Context, emit emitFunc) error {
	for i := s.start; i < len(s.m.commits); i++ {
		if s.keep != nil && !s.keep(s.m.commits[i]) {
			continue
		}
		s.emitted.Add(1)
		if err := emit(ctx, s.m.commits[i], nil); err != nil {
			s.emitted.Add(-1)
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *memSource) done(c Commit) {
	if s.handled[s.m.index(c)].Swap(true) {
		return // handled twice: counted once
	}
	if s.count.Add(1) == int64(len(s.m.commits)-s.start) {
		close(s.all)
	}
}

// advance moves the frontier over handled commits; s.mu is held.
func (s *memSource) advance() int {
	for s.frontier < len(s.handled) && s.handled[s.frontier].Load() {
		s.frontier++
	}
	return s.frontier
}

func (s *memSource) checkpoint() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strconv.Itoa(s.advance()), nil
}

func (s *memSource) lag(now time.Time) (int, time.Duration) {
	s.mu.Lock()
	f := s.advance()
	s.mu.Unlock()
	n := int(s.emitted.Load() - s.count.Load())
	if n <= 0 || f >= len(s.m.commits) {
		return 0, 0
	}
	return n, now.Sub(time.UnixMilli(s.m.commits[f].CommittedAt))
}

// memNopReader is a Reader with no commits: NewWorker requires one, and a
// memSource never calls it.
type memNopReader struct{}

func (memNopReader) Scan(context.Context, store.Position, ...func(*store.ScanOptions)) iter.Seq2[store.Commit, error] {
	return func(func(store.Commit, error) bool) {}
}

func (memNopReader) Query(context.Context, string, int64, ...func(*store.QueryOptions)) iter.Seq2[store.Commit, error] {
	return func(func(store.Commit, error) bool) {}
}

// TestMemSourceDeliversEverythingAndResumes checks the memSource against the
// source contract with the real Worker: every commit is delivered in
// per-aggregate order; a stop in the middle saves a checkpoint that covers
// only handled commits; a restart from it delivers the rest; lag counts
// what is in flight.
func TestMemSourceDeliversEverythingAndResumes(t *testing.T) {
	const n, aggs = 5000, 50
	m := newMemCommits(n, aggs, []byte(`[{"type":"deposited","amount":1}]`))
	cps := memcheckpoint.New()
	rec := newRecorder()
	var handled atomic.Int64
	release := make(chan struct{})
	// The first run handles 2,000 commits, then its handlers block until
	// it is stopped.
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		if handled.Load() >= 2000 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		handled.Add(1)
		return rec.Handle(ctx, c)
	})
	made := make(chan *memSource, 2)
	run := func(ctx context.Context) error {
		w, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: cps, DrainTimeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		w.sourceFactory = memSourceFactory(m, made)
		if err := w.Register(Subscription{Name: "mem", Handler: h, Concurrency: 4, MaxInFlight: 200}); err != nil {
			t.Fatal(err)
		}
		return w.Run(ctx)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	src := <-made
	// Blocked, the read-ahead is full: MaxInFlight commits in the
	// dispatcher and one more read, waiting to enter it.
	memWaitFor(t, func() bool {
		inFlight, _ := src.lag(time.Now())
		return handled.Load() >= 2000 && inFlight == 201
	}, "the first run did not block with a full read-ahead")
	if _, age := src.lag(time.Now()); age <= 0 {
		t.Fatalf("lag while blocked: age %v, want a positive age", age)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	cp, err := cps.Load(context.Background(), checkpointKey("mem"))
	if err != nil {
		t.Fatal(err)
	}
	at, err := strconv.Atoi(cp.Position)
	if err != nil || at < 1 || at > int(handled.Load()) {
		t.Fatalf("checkpoint after stop = %q; want an index from 1 to %d (the handled ones)", cp.Position, handled.Load())
	}
	for i := range at {
		if !src.handled[i].Load() {
			t.Fatalf("checkpoint %d passes commit %d, which was not handled", at, i)
		}
	}

	close(release)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- run(ctx) }()
	src = <-made
	select {
	case <-src.all:
	case <-time.After(10 * time.Second):
		t.Fatal("second run did not deliver the rest")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("second run: %v", err)
	}
	want := map[string]int64{}
	for _, c := range m.commits {
		want[c.AggregateID] = c.Version + 1
	}
	rec.check(t, want) // duplicates are allowed after the stop, gaps are not
	if cp, _ := cps.Load(context.Background(), checkpointKey("mem")); cp.Position != strconv.Itoa(n) {
		t.Fatalf("final checkpoint %q, want %d", cp.Position, n)
	}
	if inFlight, age := src.lag(time.Now()); inFlight != 0 || age != 0 {
		t.Fatalf("lag when done = %d, %v; want 0, 0", inFlight, age)
	}
}

// memWaitFor polls cond every millisecond for up to 10 s.
func memWaitFor(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(time.Millisecond)
	}
}
