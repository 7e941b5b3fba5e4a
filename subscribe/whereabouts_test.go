package subscribe

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// TestLocate tells which checkpoints say where a subscription is, before,
// during and after the stream's hand-over to shard units.
func TestLocate(t *testing.T) {
	now := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	streamPos := func(phase string, epoch int64, finished ...string) string {
		b, err := json.Marshal(hybridCheckpoint{Phase: phase, Stream: &streamCheckpoint{StreamARN: "arn", Epoch: epoch, Resume: now.UnixMilli(), Finished: finished}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	catchUp := func() string {
		b, err := json.Marshal(hybridCheckpoint{Phase: phaseCatchUp, Index: &indexCheckpoint{After: store.FromCommitID("20261208015900000")}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}()
	cp := func(unit, pos, owner string, expires time.Time) checkpoint.Checkpoint {
		return checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "s", Unit: unit}, Position: pos, Owner: owner, Expires: expires}
	}
	live, expired := now.Add(time.Second), now.Add(-time.Second)
	tests := []struct {
		name     string
		cps      []checkpoint.Checkpoint
		inShards bool
		epoch    int64
		units    []string
	}{
		{name: "index source without leases", cps: []checkpoint.Checkpoint{cp("", `{"after":{}}`, "", time.Time{})}, units: []string{""}},
		{name: "index buckets and memberships", cps: []checkpoint.Checkpoint{
			cp("bucket-0", `{"after":{}}`, "w1", live), cp("bucket-1", `{"after":{}}`, "w2", live), cp(memberUnitPrefix+"w1", "", "w1", live),
		}, units: []string{"bucket-0", "bucket-1"}},
		{name: "catching up, with shard units of an old epoch left", cps: []checkpoint.Checkpoint{
			cp("", catchUp, "w1", live), cp("shard-a", streamPos(phaseStream, 3), "", time.Time{}),
		}, units: []string{""}},
		{name: "stream without leases", cps: []checkpoint.Checkpoint{cp("", streamPos(phaseStream, 0), "w1", time.Time{})}, units: []string{""}},
		{name: "in shards", cps: []checkpoint.Checkpoint{
			cp("", streamPos(phaseStream, 4), "", time.Time{}),
			cp("shard-a", streamPos(phaseStream, 4, "a"), "", time.Time{}),
			cp("shard-b", streamPos(phaseStream, 4), "w1", live),
			cp("shard-c", streamPos(phaseStream, 4), "", time.Time{}),
			cp("shard-d", streamPos(phaseStream, 3), "", time.Time{}),
			cp("shard-e", streamPos(phaseStream, 3), "w2", expired),
		}, inShards: true, epoch: 4, units: []string{"shard-b", "shard-c"}},
		{name: "in shards, a shard unit held before its first save", cps: []checkpoint.Checkpoint{
			cp("", streamPos(phaseStream, 4), "", time.Time{}),
			cp("shard-b", streamPos(phaseStream, 4), "w1", live),
			cp("shard-c", "", "w2", live),
		}, inShards: true, epoch: 4, units: []string{"", "shard-b"}},
		{name: "in shards, none started", cps: []checkpoint.Checkpoint{cp("", streamPos(phaseStream, 4), "", time.Time{})}, inShards: true, epoch: 4, units: []string{""}},
		{name: "rejoin", cps: []checkpoint.Checkpoint{
			cp("", streamPos(phaseRejoin, 4), "", time.Time{}), cp("shard-b", streamPos(phaseStream, 4), "", time.Time{}),
		}, epoch: 4, units: []string{"shard-b"}},
		{name: "unreadable positions are passed over", cps: []checkpoint.Checkpoint{cp("", "garbage", "", time.Time{}), cp("bucket-0", `{"after":{}}`, "", time.Time{})}, units: []string{"bucket-0"}},
		{name: "none", units: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := Locate(tc.cps, now)
			if w.InShards != tc.inShards || w.Epoch != tc.epoch || !slices.Equal(w.Units, tc.units) {
				t.Fatalf("Locate = %+v; want in shards %v, epoch %d, units %q", w, tc.inShards, tc.epoch, tc.units)
			}
		})
	}
}

// TestBehind: a checkpoint's lag behind the newest commit.
func TestBehind(t *testing.T) {
	headAt := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	head := store.Position{CommitID: "20261208020000000", AggregateID: "a", Version: 3}
	for _, c := range []struct {
		name            string
		info            CheckpointInfo
		lag             time.Duration
		caughtUp, known bool
	}{
		{"no position", CheckpointInfo{}, 0, false, false},
		{"index at the head", CheckpointInfo{Phase: "index", After: head, HandledBefore: headAt}, 0, true, true},
		{"index at the head, a late commit pending", CheckpointInfo{Phase: "index", After: head, Pending: 1, HandledBefore: headAt.Add(-5 * time.Second)}, 5 * time.Second, false, true},
		{"catch-up behind", CheckpointInfo{Phase: "catchup", After: store.Position{CommitID: "20261208015930000"}, HandledBefore: headAt.Add(-30 * time.Second)}, 30 * time.Second, false, true},
		{"index at the beginning", CheckpointInfo{Phase: "index"}, 0, false, false},
		{"stream behind", CheckpointInfo{Phase: "stream", HandledBefore: headAt.Add(-13 * time.Second)}, 13 * time.Second, false, true},
		{"stream past the head", CheckpointInfo{Phase: "stream", HandledBefore: headAt.Add(time.Second)}, 0, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			lag, caughtUp, known := c.info.Behind(head, headAt)
			if lag != c.lag || caughtUp != c.caughtUp || known != c.known {
				t.Fatalf("Behind = %v, %v, %v; want %v, %v, %v", lag, caughtUp, known, c.lag, c.caughtUp, c.known)
			}
		})
	}
}
