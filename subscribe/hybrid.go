package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe/internal/streamreader"
)

// The stream source's phases.
const (
	phaseCatchUp = "catchup" // reading the index, until the stream takes over
	phaseStream  = "stream"  // reading the stream
)

// hybridCheckpoint is the saved position of a SourceStream or SourceAuto
// subscription, as JSON: the index position while catching up, the stream
// position once the stream has taken over.
type hybridCheckpoint struct {
	Phase  string            `json:"phase"`
	Index  *indexCheckpoint  `json:"index,omitempty"`
	Stream *streamCheckpoint `json:"stream,omitempty"`
}

// phaseRejoin marks, with leases, the subscription's checkpoint (unit "")
// of a stream whose shard units must give way to a catch-up through the
// index: its Stream is the last hand-over's. The worker that takes the unit
// waits until no shard unit of that epoch is held, then catches up from the
// oldest of their positions.
const phaseRejoin = "rejoin"

// Errors a source returns from run to end its unit cleanly: the unit drains,
// saves and releases its lease, and its lease manager decides what runs
// next.
var (
	// errShardFinished: a shard unit's shard is read to its end.
	errShardFinished = errors.New("subscribe: shard read to its end")
	// errSplit: the stream took over from the index; its shards are leased
	// one by one from now on.
	errSplit = errors.New("subscribe: the stream took over")
	// errRejoin: the stream cannot give every commit (trimmed records, a
	// gone stream); the subscription catches up through the index.
	errRejoin = errors.New("subscribe: the stream cannot give every commit")
	// errHandOverChanged: a shard unit's epoch ended before it started.
	errHandOverChanged = errors.New("subscribe: the stream's hand-over changed")
)

// hybridMode says which part of a stream subscription a hybrid source runs.
type hybridMode struct {
	// split: run until the stream has taken over from the index, then end
	// with errSplit (the subscription's unit "" with leases). epoch is the
	// unit's lease counter, recorded in the stream checkpoint.
	split bool
	epoch int64
	// shard: read only this shard, from the stream, and end with
	// errShardFinished once it is read, or errRejoin when the stream cannot
	// give its records (a shard unit).
	shard string
}

// committer is what learns that a commit it emitted was handled.
type committer interface{ handled(Commit) }

// hybridSource is the source of SourceStream and SourceAuto subscriptions.
// It reads the stream, and catches up through the index what the stream
// cannot give: history on a first start, records trimmed away, a new
// stream. Both feed one sequencer, so a commit read by both is delivered
// once.
//
// The hand-over from index to stream: once the index source has caught up
// (a poll found nothing new), the stream is opened at LATEST at time T; the
// index source goes on until its sweep has covered every commit id before
// T + Margin; commits written meanwhile come from either and are delivered
// once; then the index source stops. A restart before the hand-over ends
// starts it again from the index checkpoint.
type hybridSource struct {
	w   *Worker
	s   Subscription
	log *slog.Logger
	hybridMode

	mu  sync.Mutex // guards seq, and the stream source's held commits
	seq *sequencer

	emit emitFunc // set by run
	// onRead, if not nil, learns the outcome of each read of the stream or
	// the index and when it began (the unit's record of failing reads).
	onRead func(err error, began time.Time)

	omu      sync.Mutex
	origins  map[store.Position]committer // commits in flight, by who emitted them
	phase    string
	idx      *indexSource
	str      *streamSource
	strDone  chan error
	idxStart indexCheckpoint  // where the next catch-up starts
	strStart streamCheckpoint // where the stream resumes
}

func newHybridSource(w *Worker, s Subscription, saved string, mode hybridMode) (*hybridSource, error) {
	h := &hybridSource{w: w, s: s, log: w.log, origins: map[store.Position]committer{}, hybridMode: mode}
	var cp hybridCheckpoint
	floor := store.Position{}
	switch {
	case saved == "":
		p := s.Start.position(w.cfg.Clock())
		h.phase, h.idxStart = phaseCatchUp, indexCheckpoint{After: p, Sweep: p}
	default:
		if err := json.Unmarshal([]byte(saved), &cp); err != nil || cp.Phase == "" {
			// A checkpoint of an index subscription: catch up from it.
			ic, ierr := decodeIndexCheckpoint(saved)
			if ierr != nil {
				return nil, fmt.Errorf("subscribe: checkpoint %q is not a stream position: %w", saved, err)
			}
			cp = hybridCheckpoint{Phase: phaseCatchUp, Index: &ic}
		}
		switch {
		case cp.Phase == phaseCatchUp && cp.Index != nil:
			h.phase, h.idxStart = phaseCatchUp, *cp.Index
		case cp.Phase == phaseStream && cp.Stream != nil && mode.shard != "":
			h.phase, h.strStart = phaseStream, *cp.Stream
		case mode.shard != "":
			return nil, fmt.Errorf("subscribe: checkpoint %q of shard %s is not a stream position", saved, mode.shard)
		case cp.Phase == phaseStream && cp.Stream != nil && s.Source == SourceAuto:
			h.phase, h.idxStart = phaseCatchUp, h.catchUpFrom(*cp.Stream)
		case cp.Phase == phaseStream && cp.Stream != nil:
			h.phase, h.strStart = phaseStream, *cp.Stream
		default:
			return nil, fmt.Errorf("subscribe: checkpoint %q is not a stream position", saved)
		}
	}
	switch {
	case h.phase == phaseCatchUp:
		floor = h.idxStart.Sweep
	case h.strStart.StreamARN != "":
		floor = timeFloor(time.UnixMilli(h.strStart.Resume).Add(-s.Stream.Margin))
	}
	h.seq = newSequencer(w, s, floor)
	if h.phase == phaseStream {
		for id, m := range h.strStart.Aggregates {
			h.seq.known(id, m.Next, store.Position{CommitID: m.LastCommitID, AggregateID: id, Version: m.LastVersion})
		}
	}
	return h, nil
}

// catchUpFrom returns where an index catch-up starts for a stream position:
// Margin before the time before which every commit was handled.
func (h *hybridSource) catchUpFrom(cp streamCheckpoint) indexCheckpoint {
	p := timeFloor(time.UnixMilli(cp.Resume).Add(-h.s.Stream.Margin))
	return indexCheckpoint{After: p, Sweep: p, Aggregates: cp.Aggregates}
}

// out returns the function that hands a commit emitted by t to the
// dispatcher.
func (h *hybridSource) out(ctx context.Context, t interface {
	committer
	emitted(Commit)
}) func(Commit, error) error {
	return func(c Commit, cause error) error {
		t.emitted(c)
		h.omu.Lock()
		h.origins[c.Position()] = t
		h.omu.Unlock()
		return h.emit(ctx, c, cause)
	}
}

// catchingUp reports whether the index is still reading.
func (h *hybridSource) catchingUp() bool {
	h.omu.Lock()
	defer h.omu.Unlock()
	return h.phase == phaseCatchUp
}

func (h *hybridSource) done(c Commit) {
	h.omu.Lock()
	t := h.origins[c.Position()]
	delete(h.origins, c.Position())
	h.omu.Unlock()
	if t != nil {
		t.handled(c)
	}
	// The sources are read after t learned of c: a stream source made
	// meanwhile learned of it from the index's marks, or is told here.
	h.omu.Lock()
	idx, str := h.idx, h.str
	h.omu.Unlock()
	// Whichever checkpoint is saved knows the aggregate moved on.
	if str != nil && t != committer(str.track) {
		str.track.handled(c)
	}
	if idx != nil && t != committer(idx.track) {
		idx.track.noteHandled(c)
	}
}

func (h *hybridSource) checkpoint() (string, error) {
	h.omu.Lock()
	defer h.omu.Unlock()
	cp := hybridCheckpoint{Phase: h.phase}
	switch {
	case h.phase == phaseCatchUp && h.idx != nil:
		ic := h.idx.track.checkpoint()
		cp.Index = &ic
	case h.phase == phaseCatchUp:
		ic := h.idxStart
		cp.Index = &ic
	case h.str != nil && h.idx != nil && h.indexInFlight():
		// The stream took over, but commits the index emitted are still
		// being handled, and the stream's position knows nothing of them:
		// until they are, a restart catches up through the index again.
		ic := h.idx.track.checkpoint()
		cp = hybridCheckpoint{Phase: phaseCatchUp, Index: &ic}
	case h.str != nil:
		sc := h.str.track.checkpoint()
		cp.Stream = &sc
	default:
		sc := h.strStart
		cp.Stream = &sc
	}
	b, err := json.Marshal(cp)
	return string(b), err
}

func (h *hybridSource) lag(now time.Time) (int, time.Duration) {
	h.omu.Lock()
	idx, str := h.idx, h.str
	h.omu.Unlock()
	n, oldest := 0, int64(0)
	for _, f := range []func() (int, int64){
		func() (int, int64) {
			if idx == nil {
				return 0, 0
			}
			return idx.track.inFlight()
		},
		func() (int, int64) {
			if str == nil {
				return 0, 0
			}
			return str.track.inFlight()
		},
	} {
		k, at := f()
		n += k
		if at != 0 && (oldest == 0 || at < oldest) {
			oldest = at
		}
	}
	if str != nil {
		n += int(str.holding.Load())
	}
	if oldest == 0 {
		return n, 0
	}
	return n, max(now.Sub(time.UnixMilli(oldest)), 0)
}

func (h *hybridSource) run(ctx context.Context, emit emitFunc) error {
	h.emit = emit
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		if h.phase == phaseCatchUp {
			if err := h.catchUp(ctx); err != nil {
				return err
			}
			if h.split {
				// The stream took over: once every commit the index emitted
				// is handled (the stream's checkpoint knows nothing of
				// them), stop reading the stream here, so that its shards
				// are leased one by one from this checkpoint.
				if err := h.waitIndexHandled(ctx); err != nil {
					cancel()
					<-h.strDone
					return err
				}
				cancel()
				<-h.strDone
				return errSplit
			}
		} else if h.str == nil {
			if err := h.startStream(ctx, h.strStart, streamtypes.ShardIteratorTypeTrimHorizon); err != nil {
				return err
			}
		}
		var err error
		select {
		case err = <-h.strDone:
		case <-ctx.Done():
			<-h.strDone
			return ctx.Err()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.omu.Lock()
		stopped := h.str
		h.omu.Unlock()
		h.dropHeld(stopped)
		sc := stopped.track.checkpoint()
		if errors.Is(err, errShardFinished) {
			return err
		}
		if h.shard != "" && (errors.Is(err, streamreader.ErrTrimmed) || errors.Is(err, streamreader.ErrStreamGone)) {
			h.log.Warn("the stream cannot give every commit of the shard; the subscription catches up through the index", "subscription", h.s.Name, "shard", h.shard, "err", err)
			return fmt.Errorf("%w: %w", errRejoin, err)
		}
		if errors.Is(err, streamreader.ErrTrimmed) || errors.Is(err, streamreader.ErrStreamGone) {
			h.log.Warn("the stream cannot give every commit; catching up through the index", "subscription", h.s.Name, "err", err)
			h.omu.Lock()
			h.phase, h.idxStart, h.str = phaseCatchUp, h.catchUpFrom(sc), nil
			h.omu.Unlock()
			continue
		}
		h.log.Warn("reading the stream failed; resuming", "subscription", h.s.Name, "err", err)
		if !sleep(ctx, h.s.Index.PollMax) {
			return ctx.Err()
		}
		// The commits in flight must be handled before the stream is read
		// again: their records, read again, would be dropped as delivered
		// and completed in the new reading, which could then save a
		// position past them.
		if err := waitHandled(ctx, stopped.track.inFlight, h.s.Index.PollMin); err != nil {
			return err
		}
		sc = stopped.track.checkpoint()
		h.omu.Lock()
		h.strStart, h.str = sc, nil
		h.omu.Unlock()
	}
}

// indexInFlight reports whether commits the index catch-up emitted are not
// handled yet. Called under h.omu.
func (h *hybridSource) indexInFlight() bool {
	n, _ := h.idx.track.inFlight()
	return n > 0
}

// waitIndexHandled waits until every commit the index catch-up emitted is
// handled, or ctx ends.
func (h *hybridSource) waitIndexHandled(ctx context.Context) error {
	h.omu.Lock()
	idx := h.idx
	h.omu.Unlock()
	if idx == nil {
		return nil
	}
	return waitHandled(ctx, idx.track.inFlight, h.s.Index.PollMin)
}

// waitHandled polls inFlight every interval until it reports none, or ctx
// ends (ctx's error).
func waitHandled(ctx context.Context, inFlight func() (int, int64), every time.Duration) error {
	every = max(every, 10*time.Millisecond)
	for {
		if n, _ := inFlight(); n == 0 {
			return nil
		}
		if !sleep(ctx, every) {
			return ctx.Err()
		}
	}
}

// startStream opens the stream from cp (or at initial, for shards cp does
// not name) and reads it in the background; its end is sent on h.strDone.
func (h *hybridSource) startStream(ctx context.Context, cp streamCheckpoint, initial streamtypes.ShardIteratorType) error {
	arn := cp.StreamARN
	if arn == "" {
		var err error
		if arn, err = h.waitStreamARN(ctx, nil); err != nil {
			return err
		}
	}
	str, err := h.newStreamSource(arn, cp, initial)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- str.run(ctx) }()
	h.omu.Lock()
	h.str, h.strDone = str, done
	h.omu.Unlock()
	return nil
}

// catchUp reads the index from h.idxStart until the stream has taken over
// (then the stream runs and h.phase is phaseStream), or ctx ends.
func (h *hybridSource) catchUp(ctx context.Context) error {
	idx := buildIndexSource(h.w, h.s, h.idxStart, h.seq, &h.mu)
	idx.onRead = h.onRead
	// The stream's tracker learns the aggregates handled within Margin
	// before it is made (see learnHistory): the index keeps them that
	// long, even once its sweep has passed them.
	idx.track.keep = func() store.Position { return timeFloor(h.w.cfg.Clock().Add(-h.s.Stream.Margin)) }
	idxCtx, stopIdx := context.WithCancel(ctx)
	idxDone := make(chan error, 1)
	go func() {
		idxDone <- idx.run(idxCtx, func(ctx context.Context, c Commit, cause error) error {
			h.omu.Lock()
			h.origins[c.Position()] = idx.track
			h.omu.Unlock()
			return h.emit(ctx, c, cause)
		})
	}()
	stop := func() {
		stopIdx()
		<-idxDone
	}
	h.omu.Lock()
	h.idx = idx
	h.omu.Unlock()
	h.log.Info("catching up through the index", "subscription", h.s.Name, "from", h.idxStart.After)

	select {
	case <-idx.caughtUp:
	case err := <-idxDone:
		stopIdx()
		return err
	}
	for {
		arn, err := h.waitStreamARN(ctx, idxDone)
		if err != nil {
			stopIdx() // the index source has ended already, or ends with ctx
			return err
		}
		if err := h.startStream(ctx, streamCheckpoint{Epoch: h.epoch}, streamtypes.ShardIteratorTypeLatest); err != nil {
			stop()
			return err
		}
		h.learnHistory(idx)
		h.omu.Lock()
		positioned := h.str.positioned
		h.omu.Unlock()
		broken := false
		select {
		case <-ctx.Done():
			stop()
			<-h.strDone
			return ctx.Err()
		case err := <-idxDone:
			<-h.strDone
			return err
		case err := <-h.strDone:
			h.log.Warn("the stream failed while taking over; trying again", "subscription", h.s.Name, "err", err)
			broken = true
		case <-positioned:
		}
		if broken {
			h.omu.Lock()
			broke := h.str
			h.str = nil
			h.omu.Unlock()
			h.dropHeld(broke)
			continue
		}
		takeover := h.w.cfg.Clock().Add(h.s.Stream.Margin)
		h.log.Info("the stream is positioned; it takes over once the index has handled every commit up to the hand-over time",
			"subscription", h.s.Name, "stream", arn, "handover", takeover.UTC(), "in", handoverWait(h.s.Index, h.s.Stream))
		tick := time.NewTicker(h.s.Index.PollMin)
		// Versions the index holds for a gap are let go of before it
		// stops: within GapTimeout.
		for !broken && (idx.sweptTo.Load() < takeover.UnixMilli() || h.holding(idx.track) > 0) {
			select {
			case <-ctx.Done():
				tick.Stop()
				stop()
				<-h.strDone
				return ctx.Err()
			case err := <-idxDone:
				tick.Stop()
				<-h.strDone
				return err
			case err := <-h.strDone:
				// The stream failed while taking over: find it again.
				h.log.Warn("the stream failed while taking over; trying again", "subscription", h.s.Name, "err", err)
				broken = true
			case <-tick.C:
			}
		}
		tick.Stop()
		if broken {
			h.omu.Lock()
			broke := h.str
			h.str = nil
			h.omu.Unlock()
			h.dropHeld(broke)
			continue
		}
		stop()
		h.omu.Lock()
		h.phase = phaseStream
		h.omu.Unlock()
		if h.split {
			h.log.Info("the stream took over; once the index's commits are handled, its shards are leased one by one",
				"subscription", h.s.Name, "stream", arn, "epoch", h.epoch)
		} else {
			h.log.Info("the stream took over", "subscription", h.s.Name, "stream", arn)
		}
		return nil
	}
}

// learnHistory tells the stream source just made the progress of the
// aggregates the index handled from its Resume − Margin on, before it was
// made (it learns of those handled later from done). Without it, its
// checkpoint, which the hand-over saves and a restart or the shard units
// start from, would not know them: an aggregate's next version read from
// the stream would have them repaired from the table, and delivered again.
func (h *hybridSource) learnHistory(idx *indexSource) {
	h.omu.Lock()
	str := h.str
	h.omu.Unlock()
	str.track.learn(idx.track.marksAfter(str.track.owedFrom()))
}

// handoverWait is about how long the stream takes to take over once it is
// positioned: the index's sweep, Settle plus Overlap behind the clock, must
// pass the hand-over time, Margin ahead of it.
func handoverWait(idx IndexOptions, str StreamOptions) time.Duration {
	return str.Margin + idx.Settle + max(idx.Overlap, 0)
}

// holding returns how many versions owner holds in the sequencer for a gap.
func (h *hybridSource) holding(owner any) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq.holding(owner)
}

// dropHeld forgets the versions a stopped stream source held for a gap:
// their records were not handled, and are read again.
func (h *hybridSource) dropHeld(st *streamSource) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq.dropHeld(st)
}

// waitStreamARN returns the commits table's current stream ARN, waiting
// while the table has no stream (the index source, if any, goes on
// meanwhile), until ctx ends or idxDone reports the index source's end.
func (h *hybridSource) waitStreamARN(ctx context.Context, idxDone <-chan error) (string, error) {
	table := h.w.cfg.TableName
	for {
		began := h.w.cfg.Clock()
		out, err := h.w.cfg.Tables.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if h.onRead != nil && ctx.Err() == nil {
			h.onRead(err, began)
		}
		if err == nil && out.Table != nil && out.Table.StreamSpecification != nil &&
			aws.ToBool(out.Table.StreamSpecification.StreamEnabled) && aws.ToString(out.Table.LatestStreamArn) != "" {
			return aws.ToString(out.Table.LatestStreamArn), nil
		}
		if err == nil {
			err = fmt.Errorf("table %s has no stream enabled", table)
		}
		h.log.Warn("waiting for the commits table's stream", "subscription", h.s.Name, "err", err)
		t := time.NewTimer(h.s.Index.PollMax)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case err := <-idxDone:
			t.Stop()
			return "", err
		case <-t.C:
		}
	}
}
