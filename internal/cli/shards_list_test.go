package cli_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
)

// streamPosition is a stream subscription's position as the stream source
// saves it: handled before resume less the default margin (10 s).
func streamPosition(t *testing.T, phase string, epoch int64, handledBefore time.Time, finished ...string) string {
	t.Helper()
	stream := map[string]any{"streamArn": "arn:aws:dynamodb:local:000000000000:table/t/stream/x", "epoch": epoch,
		"resume": handledBefore.Add(10 * time.Second).UnixMilli(), "shards": map[string]string{"s-b": "100"}}
	if len(finished) > 0 {
		stream["finished"] = finished
	}
	b, err := json.Marshal(map[string]any{"phase": phase, "stream": stream})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// handOver writes the checkpoints of a leased stream subscription as its
// hand-over writes them: unit "" claimed, saved in phase stream with its
// lease counter as the epoch, and released; it returns the epoch.
func handOver(t *testing.T, cps *dynamocheckpoint.Store, sub string, handledBefore time.Time) int64 {
	t.Helper()
	cp, err := cps.Claim(t.Context(), checkpoint.Key{Subscription: sub}, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	cp.Position = streamPosition(t, "stream", cp.Lease, handledBefore)
	if err := cps.Save(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	if err := cps.Release(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	return cp.Lease
}

// shardAt writes a shard unit's checkpoint, held by owner.
func shardAt(t *testing.T, cps *dynamocheckpoint.Store, sub, unit, owner, position string) {
	t.Helper()
	cp, err := cps.Claim(t.Context(), checkpoint.Key{Subscription: sub, Unit: unit}, owner)
	if err != nil {
		t.Fatal(err)
	}
	cp.Position = position
	if err := cps.Save(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointListInShards: after a stream subscription hands over to
// its shard units, its own row says so and shows the subscription's lag,
// the greatest of its live shard units', not the hand-over's lag, which
// grows with every commit; finished shards and shard units of an earlier
// hand-over do not count. checkpoint get of its own checkpoint says the
// same.
func TestCheckpointListInShards(t *testing.T) {
	t.Parallel()
	table, cpTable := newTable(t), newCheckpointTable(t)
	st, cps := openStore(t, table), openCheckpoints(t, cpTable)
	head := appendCommits(t, st, "a/0")[0].Time()

	// "orders" handed over 98 s before the head; its shards are 13 s and
	// 8 s behind; shard a was read to its end long ago, shard z belongs to
	// an earlier hand-over.
	epoch := handOver(t, cps, "orders", head.Add(-98*time.Second))
	shardAt(t, cps, "orders", "shard-s-a", "worker-1", streamPosition(t, "stream", epoch, head.Add(-300*time.Second), "s-a"))
	shardAt(t, cps, "orders", "shard-s-b", "worker-2", streamPosition(t, "stream", epoch, head.Add(-13*time.Second)))
	shardAt(t, cps, "orders", "shard-s-c", "worker-3", streamPosition(t, "stream", epoch, head.Add(-8*time.Second)))
	shardAt(t, cps, "orders", "shard-s-z", "worker-9", streamPosition(t, "stream", epoch-1, head.Add(-600*time.Second)))
	left, err := cps.Load(t.Context(), checkpoint.Key{Subscription: "orders", Unit: "shard-s-z"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cps.Release(t.Context(), left); err != nil {
		t.Fatal(err)
	}
	// "fresh" has just handed over: no shard unit has a position yet, so
	// it is where the hand-over left it.
	handOver(t, cps, "fresh", head.Add(-4*time.Second))
	// "quiet": its one shard is past the head.
	quiet := handOver(t, cps, "quiet", head.Add(-60*time.Second))
	shardAt(t, cps, "quiet", "shard-s-b", "worker-2", streamPosition(t, "stream", quiet, head.Add(time.Second)))

	r := bothCmd(t, table, cpTable, "checkpoint", "list", "--json")
	r.want(t, 0)
	type view struct {
		checkpointJSON
		InShards   bool  `json:"inShards"`
		ShardUnits int   `json:"shardUnits"`
		Epoch      int64 `json:"epoch"`
	}
	own := map[string]view{}
	for _, l := range lines(r.stdout) {
		var v view
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		if v.Unit == "" {
			own[v.Subscription] = v
		}
	}
	lag := func(v view) string {
		if v.LagSeconds == nil {
			return "unknown"
		}
		return fmt.Sprint(*v.LagSeconds)
	}
	for _, c := range []struct {
		sub      string
		units    int
		lag      string
		caughtUp bool
	}{
		{"orders", 2, "13", false},
		{"fresh", 0, "4", false},
		{"quiet", 1, "0", true},
	} {
		v := own[c.sub]
		if !v.InShards || v.ShardUnits != c.units || lag(v) != c.lag || v.CaughtUp != c.caughtUp || v.Phase != "stream" || v.Epoch == 0 {
			t.Errorf("%s: inShards %v shardUnits %d lag %s caughtUp %v phase %q epoch %d; want in shards, %d shard units, lag %s, caughtUp %v",
				c.sub, v.InShards, v.ShardUnits, lag(v), v.CaughtUp, v.Phase, v.Epoch, c.units, c.lag, c.caughtUp)
		}
	}

	r = bothCmd(t, table, cpTable, "checkpoint", "list", "--subscription", "orders")
	r.want(t, 0)
	for prefix, has := range map[string][]string{
		"orders        -  ":       {fmt.Sprintf("in shards (epoch %d): 2 shard units", epoch), " 13s"},
		"orders        shard-s-b": {"worker-2", " 13s"},
		"orders        shard-s-z": {" - ", " 10m0s"},
	} {
		l := row(t, r.stdout, prefix)
		for _, h := range has {
			if !strings.Contains(l, h) {
				t.Errorf("row %q lacks %q", l, h)
			}
		}
	}
	if l := row(t, r.stdout, "orders        -  "); strings.Contains(l, "1m38s") {
		t.Errorf("the subscription's row shows the hand-over's lag: %q", l)
	}

	// checkpoint get of the subscription's own checkpoint says the same.
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "orders")
	r.want(t, 0)
	if l := row(t, r.stdout, "in shards:"); !strings.Contains(l, fmt.Sprintf("epoch %d: 2 shard units", epoch)) {
		t.Errorf("get: %q", l)
	}
	if l := row(t, r.stdout, "lag:"); !strings.HasSuffix(l, " 13s") {
		t.Errorf("get: %q, want the shards' lag, 13s", l)
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "orders", "--json")
	r.want(t, 0)
	var got view
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if !got.InShards || got.ShardUnits != 2 || lag(got) != "13" {
		t.Errorf("get --json: inShards %v shardUnits %d lag %s, want in shards, 2, 13", got.InShards, got.ShardUnits, lag(got))
	}
	// A shard unit's own checkpoint is as it is.
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "orders", "--unit", "shard-s-c")
	r.want(t, 0)
	if strings.Contains(r.stdout, "in shards:") || !strings.HasSuffix(row(t, r.stdout, "lag:"), " 8.0s") {
		t.Errorf("get --unit shard-s-c:\n%s", r.stdout)
	}
}
