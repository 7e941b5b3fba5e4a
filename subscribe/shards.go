package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
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
//     whoever read it) or gone; a finished shard is no longer a unit. A
//     shard unit with no position of the epoch starts from its parent's
//     last position if it has one, else from the whole checkpoint.
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
// finished in this epoch; else the whole checkpoint's. It returns "" when
// the whole checkpoint is no longer of the epoch (the lease manager then
// sorts the units out again) or ctx ended.
func (u *unit) seedShard(ctx context.Context, saved string) string {
	cp := checkpoint.Checkpoint{Position: saved}
	if _, ok := shardPosition(cp, u.epoch); ok {
		return saved
	}
	whole, err := u.loadRetrying(ctx, checkpoint.Key{Subscription: u.r.s.Name})
	if err != nil {
		return ""
	}
	ws, ok := shardPosition(whole, u.epoch)
	if !ok {
		u.log.Info("the stream's hand-over changed before the shard started; leaving it", "epoch", u.epoch)
		return ""
	}
	pos := streamCheckpoint{StreamARN: ws.StreamARN, Epoch: ws.Epoch, Parent: u.parent, Resume: ws.Resume, Aggregates: ws.Aggregates}
	from := "the stream's hand-over"
	if seq, ok := ws.Shards[u.shard]; ok {
		pos.Shards = map[string]string{u.shard: seq}
	}
	if u.parent != "" {
		pcp, err := u.loadRetrying(ctx, checkpoint.Key{Subscription: u.r.s.Name, Unit: shardUnit(u.parent)})
		if err != nil {
			return ""
		}
		if ps, ok := shardPosition(pcp, u.epoch); ok && slices.Contains(ps.Finished, u.parent) {
			pos.Resume, pos.Aggregates, pos.Shards = ps.Resume, ps.Aggregates, nil
			from = "its parent shard's end"
		}
	}
	b, err := json.Marshal(hybridCheckpoint{Phase: phaseStream, Stream: &pos})
	if err != nil {
		return ""
	}
	u.log.Info("shard unit starts", "from", from, "parent", u.parent, "after", pos.Shards[u.shard])
	return string(b)
}

// rejoin returns where unit "" of a leased stream subscription starts. For
// phase rejoin it waits until no shard unit of the last hand-over's epoch
// is held, then returns a catch-up through the index from the oldest of
// their positions (see mergeShards); any other position is returned as it
// is. It returns "" only when ctx ends.
func (u *unit) rejoin(ctx context.Context, saved string) string {
	h, ok := decodeHybrid(saved)
	if !ok || h.Phase != phaseRejoin || h.Stream == nil {
		return saved
	}
	r := u.r
	ws := *h.Stream
	var units []checkpoint.Checkpoint
	for {
		units = units[:0]
		var held []string
		var listErr error
		now := r.w.cfg.Clock()
		for cp, err := range r.w.lister.List(ctx, r.s.Name) {
			if err != nil {
				listErr = err
				continue
			}
			if !strings.HasPrefix(cp.Unit, shardUnitPrefix) {
				continue
			}
			if _, ok := shardPosition(cp, ws.Epoch); !ok && cp.Position != "" {
				continue // left over from an earlier epoch
			}
			units = append(units, cp)
			if cp.Live(now) {
				held = append(held, cp.Unit)
			}
		}
		if ctx.Err() != nil {
			return ""
		}
		if listErr == nil && len(held) == 0 {
			break
		}
		u.log.Info("waiting for the stream's shard units to stop before catching up", "held", held, "err", listErr)
		if !sleep(ctx, r.w.cfg.Leases.BalanceEvery) {
			return ""
		}
	}
	merged := mergeShards(ws, units, u.unlistedRoots(ctx, ws, units))
	p := timeFloor(time.UnixMilli(merged.Resume).Add(-r.s.Stream.Margin))
	ic := indexCheckpoint{After: p, Sweep: p, Aggregates: merged.Aggregates}
	b, err := json.Marshal(hybridCheckpoint{Phase: phaseCatchUp, Index: &ic})
	if err != nil {
		return ""
	}
	u.log.Info("the stream's shard units have stopped; catching up through the index", "from", p, "epoch", ws.Epoch)
	return string(b)
}

// unlistedRoots reports whether the stream lists a shard that no unit of
// the epoch started and whose parent has no checkpoint either: its records
// are owed from the hand-over's position on. A stream that cannot be listed
// (gone, disabled) counts as having one only when no shard unit has a
// checkpoint at all.
func (u *unit) unlistedRoots(ctx context.Context, ws streamCheckpoint, units []checkpoint.Checkpoint) bool {
	known := map[string]bool{}
	for _, cp := range units {
		known[strings.TrimPrefix(cp.Unit, shardUnitPrefix)] = true
	}
	for _, id := range ws.Finished {
		known[id] = true
	}
	rd, err := streamreader.New(u.r.w.cfg.Streams, ws.StreamARN, streamreader.Options{Logger: u.log})
	if err != nil {
		return len(units) == 0
	}
	shards, err := rd.Shards(ctx)
	if err != nil {
		return len(units) == 0
	}
	for _, sh := range shards {
		if !known[sh.ID] && (sh.ParentID == "" || !known[sh.ParentID]) {
			return true
		}
	}
	return false
}

// mergeShards returns the stream position from which a catch-up through
// the index loses nothing that the shard units of ws's epoch did not
// handle: the oldest Resume among the units still reading, the finished
// units none of whose children started, the units that saved nothing yet
// (they start from ws), and ws itself when rootsOwed; with, per aggregate,
// the furthest version handled.
func mergeShards(ws streamCheckpoint, units []checkpoint.Checkpoint, rootsOwed bool) streamCheckpoint {
	started := map[string]bool{}
	positions := map[string]streamCheckpoint{}
	for _, cp := range units {
		if s, ok := shardPosition(cp, ws.Epoch); ok {
			positions[cp.Unit] = s
			if s.Parent != "" {
				started[s.Parent] = true
			}
		}
	}
	out := streamCheckpoint{StreamARN: ws.StreamARN, Epoch: ws.Epoch, Aggregates: map[string]aggregateMark{}}
	older := func(resume int64) {
		if out.Resume == 0 || resume < out.Resume {
			out.Resume = resume
		}
	}
	if rootsOwed || len(units) == 0 {
		older(ws.Resume)
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
		s, ok := positions[cp.Unit]
		switch {
		case !ok && cp.Position == "":
			older(ws.Resume) // taken, nothing saved yet: it starts from ws
			continue
		case !ok:
			continue // left over from an earlier epoch
		}
		shard := strings.TrimPrefix(cp.Unit, shardUnitPrefix)
		if !slices.Contains(s.Finished, shard) || !started[shard] {
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
		if !cp.Live(now) && m.held[name] == nil && (stale || (!listed[id] && (finished || cp.Position == ""))) {
			m.forget(ctx, cp)
		}
	}
	finished := func(id string) bool {
		s, ok := positions[id]
		return ok && slices.Contains(s.Finished, id) || slices.Contains(ws.Finished, id)
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

// shards lists the shards of the stream arn, through a reader kept from
// one round to the next (its DescribeStream pacing with it).
func (m *leaseManager) shards(ctx context.Context, arn string) ([]streamreader.Shard, error) {
	if m.rd == nil || m.rd.StreamARN() != arn {
		rd, err := streamreader.New(m.r.w.cfg.Streams, arn, streamreader.Options{Logger: m.r.log})
		if err != nil {
			return nil, err
		}
		m.rd = rd
	}
	return m.rd.Shards(ctx)
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
