package subscribe

import (
	"slices"
	"strings"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Whereabouts says which of a subscription's checkpoints tell where it
// is, for operators: a leased stream subscription moves from its own
// checkpoint (unit "") to its shard units once the stream takes over (see
// LeaseOptions), and its own checkpoint then keeps the hand-over's
// position, which no longer moves.
type Whereabouts struct {
	// InShards is true when the subscription's own checkpoint is in phase
	// stream with an epoch: its shard units of that epoch tell where it is.
	InShards bool
	// Epoch is the hand-over that the shard units belong to, in shards or
	// in phase rejoin; 0 otherwise.
	Epoch int64
	// Units are the units whose checkpoints tell where the subscription
	// is, in the order given; its lag is the greatest of theirs.
	//
	//   - In shards or in phase rejoin: the shard units of the epoch not
	//     read to their end. A shard unit held with no position of the
	//     epoch yet starts from the hand-over's position, so it counts as
	//     unit "". Unit "" alone when no shard unit counts (the shards
	//     start from the hand-over's position).
	//   - Otherwise every unit but the workers' memberships and shard
	//     units: unit "" (a subscription leased whole or without leases),
	//     or the buckets of an index source.
	Units []string
}

// Locate tells which of cps, the checkpoints of one subscription, tell
// where it is, at now (whether a shard unit's lease is live). Checkpoints
// whose position no source wrote are passed over. It is a pure function,
// safe for concurrent use.
func Locate(cps []checkpoint.Checkpoint, now time.Time) Whereabouts {
	var whole *hybridCheckpoint
	for _, cp := range cps {
		if cp.Unit != "" {
			continue
		}
		if h, ok := decodeHybrid(cp.Position); ok && (h.Phase == phaseStream || h.Phase == phaseRejoin) && h.Stream != nil && h.Stream.Epoch > 0 {
			whole = &h
		}
	}
	var w Whereabouts
	if whole == nil {
		for _, cp := range cps {
			if IsMemberUnit(cp.Unit) || strings.HasPrefix(cp.Unit, shardUnitPrefix) {
				continue
			}
			if _, err := DescribeCheckpoint(cp.Position, 0); err == nil {
				w.Units = append(w.Units, cp.Unit)
			}
		}
		return w
	}
	w.InShards, w.Epoch = whole.Phase == phaseStream, whole.Stream.Epoch
	atHandOver := false
	for _, cp := range cps {
		shard, ok := strings.CutPrefix(cp.Unit, shardUnitPrefix)
		if !ok {
			continue
		}
		pos, ok := shardPosition(cp, w.Epoch)
		switch {
		case ok && slices.Contains(pos.Finished, shard):
			// Read to its end: no longer a unit.
		case ok:
			w.Units = append(w.Units, cp.Unit)
		case cp.Owner != "" && cp.Live(now):
			atHandOver = true
		}
	}
	if atHandOver || len(w.Units) == 0 {
		w.Units = append([]string{""}, w.Units...)
	}
	return w
}

// Behind tells how far a checkpoint described by info is behind head, the
// newest commit, committed at headAt: caught up (lag 0) when an index or
// catch-up position has handled head and every commit before it; else
// headAt less HandledBefore, at least 0, and caught up too when that is 0
// in the stream phase. known is false when info has no phase or no
// HandledBefore (the beginning).
func (info CheckpointInfo) Behind(head store.Position, headAt time.Time) (lag time.Duration, caughtUp, known bool) {
	switch {
	case info.Phase == "":
		return 0, false, false
	case (info.Phase == "index" || info.Phase == phaseCatchUp) && info.Pending == 0 && info.After.Compare(head) >= 0:
		return 0, true, true
	case info.HandledBefore.IsZero():
		return 0, false, false
	}
	lag = max(headAt.Sub(info.HandledBefore), 0)
	return lag, lag == 0 && info.Phase == phaseStream, true
}

// Lag returns the subscription's lag: the greatest of its Units' lags, as
// lagOf tells each (see CheckpointInfo.Behind), caught up when all are;
// known is false when one is unknown, or there is no unit.
func (w Whereabouts) Lag(lagOf func(unit string) (lag time.Duration, caughtUp, known bool)) (lag time.Duration, caughtUp, known bool) {
	caughtUp = true
	for _, u := range w.Units {
		l, c, k := lagOf(u)
		if !k {
			return 0, false, false
		}
		lag, caughtUp = max(lag, l), caughtUp && c
	}
	return lag, caughtUp, len(w.Units) > 0
}
