package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/subscribe/internal/streamreader"
)

// A stream subscription under leases (SourceStream or SourceAuto with
// Config.Leases) runs in one of two modes, told by its checkpoint without a
// unit (unit "", the "whole" checkpoint):
//
//   - whole: no checkpoint yet, phase catch-up, or phase rejoin. The one
//     unit is "": its holder catches up through the index until the stream
//     takes over, as without leases, then saves the stream's position with
//     the epoch (its lease counter), releases the unit and stops.
//   - shards: phase stream. The units are the stream's shards, "shard-"
//     followed by the shard id, each with its own checkpoint. A shard is a
//     unit once its parent is finished (read to its end and handled,
//     whoever read it) or gone with nothing read of it; a finished shard
//     is no longer a unit. A shard with records owed that the stream no
//     longer lists means trimmed records: a rejoin. A shard unit with no
//     position of the epoch starts from its parent's last position if it
//     has one, else from the whole checkpoint.
//
// A shard unit that finds the stream cannot give its records (trimmed, the
// stream disabled or gone) ends with errRejoin; its lease manager then
// writes phase rejoin to the whole checkpoint. Every worker stops its shard
// units at its next balance, and the worker that takes unit "" waits until
// no shard unit of the epoch is held before it catches up from the oldest
// of their positions.

// decodeHybrid decodes a stream subscription's position; ok is false for
// "" and for anything else that is not one.
func decodeHybrid(pos string) (h hybridCheckpoint, ok bool) {
	if pos == "" || json.Unmarshal([]byte(pos), &h) != nil || h.Phase == "" {
		return hybridCheckpoint{}, false
	}
	return h, true
}

// shardPosition returns the stream position of a shard unit's checkpoint
// of the given epoch; ok is false for another epoch or no position.
func shardPosition(cp checkpoint.Checkpoint, epoch int64) (streamCheckpoint, bool) {
	h, ok := decodeHybrid(cp.Position)
	if !ok || h.Phase != phaseStream || h.Stream == nil || h.Stream.Epoch != epoch {
		return streamCheckpoint{}, false
	}
	return *h.Stream, true
}

// loadRetrying loads key until it succeeds, is not found (zero checkpoint),
// or ctx ends (ctx's error).
func (u *unit) loadRetrying(ctx context.Context, key checkpoint.Key) (checkpoint.Checkpoint, error) {
	r := u.r
	backoff := r.s.Retry.InitialBackoff
	for {
		cp, err := r.w.cfg.Checkpoints.Load(ctx, key)
		switch {
		case err == nil:
			return cp, nil
		case errors.Is(err, checkpoint.ErrNotFound):
			return checkpoint.Checkpoint{}, nil
		case ctx.Err() != nil:
			return cp, ctx.Err()
		}
		u.log.Warn("reading a checkpoint failed; retrying", "key", key.String(), "err", err)
		if !sleep(ctx, jitter(backoff)) {
			return cp, ctx.Err()
		}
		backoff = min(backoff*2, r.s.Retry.MaxBackoff)
	}
}

// seedShard returns where a shard unit starts: its own position when it is
// of the unit's epoch; else its parent's last position, if the parent was
// finished in this epoch; else the whole checkpoint's. ok is false when the
// whole checkpoint is no longer in phase stream in the unit's epoch (the
// unit then stops, and the lease manager sorts the units out again), or
// ctx ended.
func (u *unit) seedShard(ctx context.Context, saved string) (string, bool) {
	whole, err := u.loadRetrying(ctx, checkpoint.Key{Subscription: u.r.s.Name})
	if err != nil {
		return "", false
	}
	wh, ok := decodeHybrid(whole.Position)
	if !ok || wh.Phase != phaseStream || wh.Stream == nil || wh.Stream.Epoch != u.epoch {
		u.log.Info("the stream's hand-over changed before the shard started; leaving it", "epoch", u.epoch, "phase", wh.Phase)
		return "", false
	}
	ws := *wh.Stream
	if _, ok := shardPosition(checkpoint.Checkpoint{Position: saved}, u.epoch); ok {
		return saved, true
	}
	pos := streamCheckpoint{StreamARN: ws.StreamARN, Epoch: ws.Epoch, Parent: u.parent, Resume: ws.Resume, Aggregates: ws.Aggregates}
	from := "the stream's hand-over"
	if seq, ok := ws.Shards[u.shard]; ok {
		pos.Shards = map[string]string{u.shard: seq}
	}
	if u.parent != "" {
		pcp, err := u.loadRetrying(ctx, checkpoint.Key{Subscription: u.r.s.Name, Unit: shardUnit(u.parent)})
		if err != nil {
			return "", false
		}
		if ps, ok := shardPosition(pcp, u.epoch); ok && slices.Contains(ps.Finished, u.parent) {
			pos.Resume, pos.Aggregates, pos.Shards = ps.Resume, ps.Aggregates, nil
			from = "its parent shard's end"
		}
	}
	b, err := json.Marshal(hybridCheckpoint{Phase: phaseStream, Stream: &pos})
	if err != nil {
		return "", false
	}
	u.log.Info("shard unit starts", "from", from, "parent", u.parent, "after", pos.Shards[u.shard])
	return string(b), true
}

// rejoin returns where unit "" of a leased stream subscription starts. For
// phase rejoin it waits until no shard unit of the last hand-over's epoch
// is held, then returns a catch-up through the index from the oldest of
// their positions (see mergeShards); any other position is returned as it
// is. It returns "" only when ctx ends.
//
// One listing that finds no shard unit held is enough: a shard unit
// released, or whose lease expired, saves nothing more; and a worker that
// takes one after the listing (it listed the subscription before the
// rejoin was written) reads the whole checkpoint after its Take, finds
// phase rejoin there (seedShard), and leaves without reading. While shard
// units are held it lists again every rejoinPoll (at most BalanceEvery),
// so that the catch-up starts as soon as their holders release them.
func (u *unit) rejoin(ctx context.Context, saved string) string {
	h, ok := decodeHybrid(saved)
	if !ok || h.Phase != phaseRejoin || h.Stream == nil {
		return saved
	}
	r := u.r
	ws := *h.Stream
	var units []checkpoint.Checkpoint
	var logged []string
	listings := 0
	for {
		var all []checkpoint.Checkpoint
		var listErr error
		listings++
		for cp, err := range r.w.lister.List(ctx, r.s.Name) {
			if err != nil {
				listErr = err
				continue
			}
			all = append(all, cp)
		}
		if ctx.Err() != nil {
			return ""
		}
		var held []string
		units, held = epochShardUnits(all, ws.Epoch, r.w.cfg.Clock())
		if listErr == nil && len(held) == 0 {
			break
		}
		if listErr != nil || listings == 1 || !slices.Equal(held, logged) {
			u.log.Info("waiting for the stream's shard units to stop before catching up", "held", held, "err", listErr)
			logged = held
		}
		if !sleep(ctx, min(rejoinPoll, r.w.cfg.Leases.BalanceEvery)) {
			return ""
		}
	}
	merged := mergeShards(ws, units, u.streamShards(ctx, ws.StreamARN))
	p := timeFloor(time.UnixMilli(merged.Resume).Add(-r.s.Stream.Margin))
	ic := indexCheckpoint{After: p, Sweep: p, Aggregates: merged.Aggregates}
	b, err := json.Marshal(hybridCheckpoint{Phase: phaseCatchUp, Index: &ic})
	if err != nil {
		return ""
	}
	u.log.Info("the stream's shard units have stopped; catching up through the index", "from", p, "epoch", ws.Epoch, "listings", listings)
	return string(b)
}

// rejoinPoll is how often a rejoin lists the shard units while some are
// held: they stop at their holders' next balance, and release at once.
const rejoinPoll = 250 * time.Millisecond

// epochShardUnits returns, of a subscription's checkpoints, the shard
// units of epoch (or with no position yet), and the names of those held at
// now: a released lease, or one expired, is not held.
func epochShardUnits(all []checkpoint.Checkpoint, epoch int64, now time.Time) (units []checkpoint.Checkpoint, held []string) {
	for _, cp := range all {
		if !strings.HasPrefix(cp.Unit, shardUnitPrefix) {
			continue
		}
		if _, ok := shardPosition(cp, epoch); !ok && cp.Position != "" {
			continue // left over from an earlier epoch
		}
		units = append(units, cp)
		if cp.Live(now) {
			held = append(held, cp.Unit)
		}
	}
	return units, held
}

// streamShards lists the shards of stream arn, a DISABLED stream's too,
// or returns nil when it cannot (the stream is gone, or the call fails).
func (u *unit) streamShards(ctx context.Context, arn string) []streamreader.Shard {
	shards, _, err := u.r.w.listShards(ctx, arn, 0)
	if err != nil {
		u.log.Warn("listing the stream's shards failed; catching up from the stream's hand-over", "err", err)
		return nil
	}
	return shards
}

// mergeShards returns the stream position from which a catch-up through
// the index loses nothing that the shard units of ws's epoch did not
// handle, given the stream's shards (nil when unknown); with, per
// aggregate, the furthest version handled. It is the oldest Resume among:
//   - the units still reading;
//   - the finished units, unless the listing shows every child of theirs
//     with a position of its own;
//   - the units that saved nothing yet, the listed shards that no unit
//     started and whose parent did not either, and, with no listing, any
//     shard the units do not account for: ws's own, which they start from.
func mergeShards(ws streamCheckpoint, units []checkpoint.Checkpoint, shards []streamreader.Shard) streamCheckpoint {
	positions := map[string]streamCheckpoint{}
	for _, cp := range units {
		shard := strings.TrimPrefix(cp.Unit, shardUnitPrefix)
		if s, ok := shardPosition(cp, ws.Epoch); ok {
			positions[shard] = s
		}
	}
	children := map[string][]string{}
	for _, sh := range shards {
		if sh.ParentID != "" {
			children[sh.ParentID] = append(children[sh.ParentID], sh.ID)
		}
	}
	out := streamCheckpoint{StreamARN: ws.StreamARN, Epoch: ws.Epoch, Aggregates: map[string]aggregateMark{}}
	older := func(resume int64) {
		if out.Resume == 0 || resume < out.Resume {
			out.Resume = resume
		}
	}
	switch {
	case shards == nil:
		older(ws.Resume) // shards the units do not account for may be owed from ws
	default:
		for _, sh := range shards {
			_, started := positions[sh.ID]
			_, parentStarted := positions[sh.ParentID]
			if !started && !parentStarted && !slices.Contains(ws.Finished, sh.ID) {
				older(ws.Resume) // no unit started it or its parent: it starts from ws
			}
		}
	}
	merge := func(aggs map[string]aggregateMark) {
		for id, m := range aggs {
			if cur, ok := out.Aggregates[id]; !ok || m.Next > cur.Next {
				out.Aggregates[id] = m
			}
		}
	}
	merge(ws.Aggregates)
	for _, cp := range units {
		shard := strings.TrimPrefix(cp.Unit, shardUnitPrefix)
		s, ok := positions[shard]
		switch {
		case !ok && cp.Position == "":
			older(ws.Resume) // taken, nothing saved yet: it starts from ws
			continue
		case !ok:
			continue // left over from an earlier epoch
		}
		allStarted := shards != nil && len(children[shard]) > 0
		for _, c := range children[shard] {
			if _, ok := positions[c]; !ok {
				allStarted = false
			}
		}
		if !slices.Contains(s.Finished, shard) || !allStarted {
			older(s.Resume)
		}
		merge(s.Aggregates)
	}
	if out.Resume == 0 {
		out.Resume = ws.Resume
	}
	return out
}

// streamSpecs returns the units of a leased stream subscription, given its
// checkpoints by unit (see the comment at the top of this file): unit ""
// alone, or the shards ready to read, or none while the whole checkpoint is
// held by a worker finishing a hand-over or starting a catch-up. It deletes
// the checkpoints of shard units no longer needed. ok is false when the
// stream's shards could not be listed: the round changes nothing.
func (m *leaseManager) streamSpecs(ctx context.Context, all map[string]checkpoint.Checkpoint, now time.Time) ([]unitSpec, bool) {
	r := m.r
	whole := all[""]
	h, ok := decodeHybrid(whole.Position)
	if !ok || h.Phase != phaseStream || h.Stream == nil {
		return []unitSpec{{}}, true
	}
	if m.live("", whole, now) && (whole.Owner != r.w.cfg.Owner || m.held[""] != nil) {
		return nil, true // the hand-over is finishing, or a catch-up starting
	}
	if whole.Owner != "" && whole.Expires.IsZero() && whole.Owner != r.w.cfg.Owner {
		// Held by Claim and taken as abandoned: fence its holder (its next
		// save fails) before reading the shards.
		cp, err := r.w.leaser.Take(ctx, whole.Key, r.w.cfg.Owner, whole, m.opts.Duration)
		if err == nil {
			if setter, ok := r.w.cfg.Checkpoints.(checkpoint.Setter); ok {
				err = setter.Release(ctx, cp)
			}
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("taking the subscription's checkpoint from its holder without a lease failed", "err", err)
		}
		return nil, true
	}
	ws := *h.Stream
	switch m.rejoinFor.Load() {
	case 0:
	case ws.Epoch + 1:
		m.startRejoin(ctx, whole, ws)
		return nil, true
	default: // wanted in an earlier epoch, which has ended since
		m.rejoinFor.Store(0)
	}
	shards, err := m.shards(ctx, ws.StreamARN)
	if errors.Is(err, streamreader.ErrStreamGone) {
		r.log.Warn("the subscription's stream is gone; catching up through the index", "stream", ws.StreamARN, "err", err)
		m.startRejoin(ctx, whole, ws)
		return nil, true
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("listing the stream's shards failed", "err", err)
			r.setErr(err)
		}
		return nil, false
	}
	listed := make(map[string]bool, len(shards))
	for _, sh := range shards {
		listed[sh.ID] = true
	}
	positions := map[string]streamCheckpoint{}
	for name, cp := range all {
		id, isShard := strings.CutPrefix(name, shardUnitPrefix)
		if !isShard {
			continue
		}
		s, ok := shardPosition(cp, ws.Epoch)
		if ok {
			positions[id] = s
		}
		stale := !ok && cp.Position != ""
		finished := ok && slices.Contains(s.Finished, id)
		// A finished shard the hand-over names keeps its checkpoint for the
		// epoch: without it, the hand-over's position would look owed.
		_, atHandOver := ws.Shards[id]
		if !cp.Live(now) && m.held[name] == nil && (stale || (!listed[id] && (finished && !atHandOver || cp.Position == ""))) {
			m.forget(ctx, cp)
		}
	}
	finished := func(id string) bool {
		s, ok := positions[id]
		return ok && slices.Contains(s.Finished, id) || slices.Contains(ws.Finished, id)
	}
	// A shard with records owed (a position of the epoch, or one at the
	// hand-over) that the stream no longer lists, and that is not
	// finished, had its records trimmed: as a reader of it would be told.
	for _, id := range slices.Concat(slices.Collect(maps.Keys(positions)), slices.Collect(maps.Keys(ws.Shards))) {
		if !listed[id] && !finished(id) {
			r.log.Warn("a shard with records owed is no longer in the stream; catching up through the index", "shard", id)
			m.startRejoin(ctx, whole, ws)
			return nil, true
		}
	}
	var specs []unitSpec
	for _, sh := range shards {
		if finished(sh.ID) {
			continue
		}
		_, parentStarted := positions[sh.ParentID]
		if sh.ParentID == "" || finished(sh.ParentID) || !listed[sh.ParentID] && !parentStarted {
			specs = append(specs, unitSpec{name: shardUnit(sh.ID), shard: sh.ID, parent: sh.ParentID, epoch: ws.Epoch})
		}
	}
	return specs, true
}

// shards lists the shards of the stream arn, a listing younger than a
// balance round shared with the worker's other subscriptions (a fresh one
// in a round asked for by unitEnded). A DISABLED
// stream returns an error matching streamreader.ErrStreamGone.
func (m *leaseManager) shards(ctx context.Context, arn string) ([]streamreader.Shard, error) {
	fresh := m.opts.BalanceEvery * 9 / 10
	if m.listNow {
		fresh = 0
	}
	shards, disabled, err := m.r.w.listShards(ctx, arn, fresh)
	if err == nil && disabled {
		return nil, fmt.Errorf("%w: stream %s is DISABLED", streamreader.ErrStreamGone, arn)
	}
	return shards, err
}

// shardListing is one stream's last listing, shared by a worker's
// subscriptions.
type shardListing struct {
	mu       sync.Mutex // held while listing: one call at a time per stream
	rd       *streamreader.Reader
	shards   []streamreader.Shard
	disabled bool
	at       time.Time
}

// listShards lists the shards of the stream arn (a DISABLED stream's too,
// reported by disabled) for the lease managers of every subscription of w:
// a listing younger than fresh is shared, so that DescribeStream calls (10
// per second for the whole account) grow with the workers, not with their
// subscriptions. Each stream's reader, and its DescribeStream pacing, is
// kept from one call to the next. A stream that does not exist returns an
// error matching streamreader.ErrStreamGone.
func (w *Worker) listShards(ctx context.Context, arn string, fresh time.Duration) ([]streamreader.Shard, bool, error) {
	w.mu.Lock()
	if w.listings == nil {
		w.listings = map[string]*shardListing{}
	}
	l := w.listings[arn]
	if l == nil {
		l = &shardListing{}
		w.listings[arn] = l
	}
	w.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.at.IsZero() && time.Since(l.at) < fresh {
		return l.shards, l.disabled, nil
	}
	if l.rd == nil {
		rd, err := streamreader.New(w.cfg.Streams, arn, streamreader.Options{Logger: w.log})
		if err != nil {
			return nil, false, err
		}
		l.rd = rd
	}
	shards, disabled, err := l.rd.ShardsAndStatus(ctx)
	if err != nil {
		l.at = time.Time{}
		return nil, false, err
	}
	l.shards, l.disabled, l.at = shards, disabled, time.Now()
	return shards, disabled, nil
}

// forget deletes the checkpoint of a shard unit no longer needed: of an
// earlier epoch, or finished (or never saved) and no longer listed by the
// stream. Without a checkpoint.Deleter it stays.
func (m *leaseManager) forget(ctx context.Context, cp checkpoint.Checkpoint) {
	d, ok := m.r.w.cfg.Checkpoints.(checkpoint.Deleter)
	if !ok {
		return
	}
	if err := d.Delete(ctx, cp); err != nil && ctx.Err() == nil {
		m.r.log.Debug("deleting a checkpoint no longer needed failed", "unit", cp.Unit, "err", err)
		return
	}
	m.r.log.Info("deleted a checkpoint no longer needed", "unit", cp.Unit)
}

// startRejoin writes phase rejoin to the whole checkpoint, seen as whole,
// with a lease taken for the write and released at once: at their next
// balance, workers stop their shard units, and one takes unit "" to catch
// up.
func (m *leaseManager) startRejoin(ctx context.Context, whole checkpoint.Checkpoint, ws streamCheckpoint) {
	r := m.r
	b, err := json.Marshal(hybridCheckpoint{Phase: phaseRejoin, Stream: &ws})
	if err != nil {
		return
	}
	cp, err := r.w.leaser.Take(ctx, whole.Key, r.w.cfg.Owner, whole, m.opts.Duration)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("taking the subscription's checkpoint to catch up through the index failed", "err", err)
		}
		return
	}
	cp.Position = string(b)
	if err := r.w.cfg.Checkpoints.Save(ctx, cp); err != nil {
		r.log.Warn("writing the subscription's catch-up failed", "err", err)
		return
	}
	m.rejoinFor.Store(0)
	if setter, ok := r.w.cfg.Checkpoints.(checkpoint.Setter); ok {
		if err := setter.Release(ctx, cp); err != nil {
			r.log.Warn("releasing the subscription's checkpoint failed; its lease expires by itself", "err", err)
		}
	}
	r.log.Warn("the subscription leaves the stream's shards and catches up through the index", "epoch", ws.Epoch)
}
