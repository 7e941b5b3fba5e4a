package subscribe

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
)

// ParseStart parses a start point as operators write it: "beginning" (or
// ""), "now" (either in any case), a commit id (17 digits of UTC time,
// YYYYMMDDHHmmssSSS, optionally followed by ":" and an aggregate id) or an
// RFC 3339 time such as 2026-11-26T08:00:00Z. Spaces around it are
// ignored. It returns an error matching ErrInvalidConfig for anything else.
func ParseStart(s string) (Start, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "beginning", "":
		return StartBeginning, nil
	case "now":
		return StartNow, nil
	}
	if isCommitID(s) {
		return StartAtCommitID(s), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return StartAtTime(t), nil
	}
	return Start{}, fmt.Errorf("%w: start %q: want beginning, now, a commit id (YYYYMMDDHHmmssSSS[:aggregateId]) or an RFC 3339 time", ErrInvalidConfig, s)
}

// isCommitID reports whether s is 17 digits of a valid UTC time, alone or
// followed by ":" and the rest of a commit id.
func isCommitID(s string) bool {
	const digits = 17 // YYYYMMDDHHmmssSSS
	if len(s) > digits && s[digits] != ':' {
		return false
	}
	_, err := store.ParseCommitIDTime(s)
	return err == nil
}

// CheckpointAt returns a checkpoint position from which a subscription of
// any source mode resumes as if it first started at start at time now: an
// index position (SourceStream and SourceAuto catch up from it through the
// index, then the stream takes over). Operators write it with
// checkpoint.Setter to move a subscription.
func CheckpointAt(start Start, now time.Time) string {
	p := start.position(now)
	b, _ := json.Marshal(indexCheckpoint{After: p, Sweep: p}) // a Position always marshals
	return string(b)
}

// CheckpointInfo describes a saved checkpoint position for operators.
type CheckpointInfo struct {
	// Phase is "index" for an index source's position, "catchup" for a
	// stream source catching up through the index, "stream" once the
	// stream has taken over, "rejoin" for a leased stream subscription
	// whose shard units give way to a catch-up through the index (see
	// LeaseOptions), "" for an empty position.
	Phase string
	// Epoch, with leases, is the stream hand-over a stream position belongs
	// to; 0 without leases.
	Epoch int64
	// Parent is, for a stream shard unit's position, the shard its shard
	// was split from, if any.
	Parent string
	// After is, in the index and catch-up phases, the position up to which
	// every commit is handled, except Pending of them.
	After store.Position
	// Pending counts late commits before After not handled yet.
	Pending int
	// StreamARN, Shards and Finished describe the stream phase: the
	// stream, the shards with a position, the shards read to their end.
	StreamARN        string
	Shards, Finished int
	// HandledBefore is a time before which every commit is handled: the
	// time of After's commit id, or of the earliest pending commit's if it
	// is earlier, or in the stream phase the resume time less margin. Zero
	// when unknown (an empty position, or the beginning).
	HandledBefore time.Time
	// Aggregates counts the aggregates whose progress the checkpoint
	// tracks.
	Aggregates int
}

// DescribeCheckpoint decodes a position saved by a subscription of any
// source mode. It returns an error for a position no source wrote.
// margin is the stream source's StreamOptions.Margin (0 for the default).
func DescribeCheckpoint(position string, margin time.Duration) (CheckpointInfo, error) {
	if position == "" {
		return CheckpointInfo{}, nil
	}
	if margin <= 0 {
		margin = StreamOptions{}.withDefaults().Margin
	}
	// Every position a source writes is a JSON object with a phase (the
	// stream source) or an after field (the index source).
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(position), &fields); err != nil {
		return CheckpointInfo{}, fmt.Errorf("subscribe: checkpoint %.80q is not a position: %w", position, err)
	}
	var h hybridCheckpoint
	if err := json.Unmarshal([]byte(position), &h); err != nil {
		return CheckpointInfo{}, fmt.Errorf("subscribe: checkpoint %.80q is not a position: %w", position, err)
	}
	describeIndex := func(phase string, ic indexCheckpoint) CheckpointInfo {
		info := CheckpointInfo{Phase: phase, After: ic.After, Pending: len(ic.Pending), Aggregates: len(ic.Aggregates)}
		if t, err := store.ParseCommitIDTime(ic.After.CommitID); err == nil {
			info.HandledBefore = t
		}
		// A late commit not handled yet is before After: every commit is
		// handled only before the earliest of them.
		for _, p := range ic.Pending {
			if t, err := store.ParseCommitIDTime(p.CommitID); err == nil && t.Before(info.HandledBefore) {
				info.HandledBefore = t
			} else if err != nil {
				info.HandledBefore = time.Time{}
				break
			}
		}
		return info
	}
	switch {
	case h.Phase == "" && fields["after"] != nil:
		ic, err := decodeIndexCheckpoint(position)
		if err != nil {
			return CheckpointInfo{}, err
		}
		return describeIndex("index", ic), nil
	case h.Phase == phaseCatchUp && h.Index != nil:
		return describeIndex(phaseCatchUp, *h.Index), nil
	case (h.Phase == phaseStream || h.Phase == phaseRejoin) && h.Stream != nil:
		s := h.Stream
		info := CheckpointInfo{Phase: h.Phase, StreamARN: s.StreamARN, Shards: len(s.Shards), Finished: len(s.Finished),
			Aggregates: len(s.Aggregates), Epoch: s.Epoch, Parent: s.Parent}
		if s.Resume > 0 {
			info.HandledBefore = time.UnixMilli(s.Resume).Add(-margin).UTC()
		}
		return info, nil
	}
	return CheckpointInfo{}, fmt.Errorf("subscribe: checkpoint %.80q is not a position", position)
}
