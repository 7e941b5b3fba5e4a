package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// TestTableDeleteAsksForYes: without --yes, table delete says how many
// commits the table holds and deletes nothing; with it, it deletes them
// and says how many it deleted.
func TestTableDeleteAsksForYes(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	cmd(t, table, appendInput, "append").want(t, 0)
	r := cmd(t, table, "", "table", "delete")
	r.want(t, 4, "table "+table+" holds 5 commits: deleting it deletes them all; add --yes")
	r = cmd(t, table, "", "scan")
	r.want(t, 0)
	if got := len(lines(r.stdout)); got != 5 {
		t.Fatalf("after a delete without --yes, scan prints %d commits, want 5", got)
	}
	// A count that takes several pages (1 MB each) is whole: 12 commits of
	// 100 KB.
	var in strings.Builder
	for v := range 12 {
		fmt.Fprintf(&in, `{"aggregateId":"big","version":%d,"events":["%s"]}`+"\n", v, strings.Repeat("x", 100_000))
	}
	cmd(t, table, in.String(), "append").want(t, 0)
	cmd(t, table, "", "table", "delete").want(t, 4, "holds 17 commits")
	cmd(t, table, "", "table", "delete", "--yes").want(t, 0, "table "+table+" deleted, with the 17 commits it held")
	cmd(t, table, "", "table", "describe").want(t, 1, "not found")
}

// TestCheckpointCreateTable: the command creates the checkpoint table the
// worker and the checkpoint commands use, on the endpoint given; again is
// an error unless --if-not-exists; a table of another layout is refused.
func TestCheckpointCreateTable(t *testing.T) {
	t.Parallel()
	client := ddbtest.Client(t)
	cpTable := ddbtest.TableName(t) + "-cp"
	t.Cleanup(func() {
		_ = dynamocheckpoint.DeleteTable(context.Background(), client, dynamocheckpoint.Config{TableName: cpTable})
	})
	cpCmd(t, cpTable, "checkpoint", "create-table").want(t, 0, "checkpoint table "+cpTable+" created")
	_, mismatches, err := dynamocheckpoint.DescribeTable(t.Context(), client, dynamocheckpoint.Config{TableName: cpTable})
	if err != nil || len(mismatches) != 0 {
		t.Fatalf("the table created: %v, mismatches %q", err, mismatches)
	}
	// It is the table the worker's checkpoints go to.
	cps := openCheckpoints(t, cpTable)
	if _, err := cps.Set(t.Context(), checkpoint.Key{Subscription: "s"}, "", false); err != nil {
		t.Fatalf("Set on the created table: %v", err)
	}
	cpCmd(t, cpTable, "checkpoint", "list").want(t, 0)

	cpCmd(t, cpTable, "checkpoint", "create-table").want(t, 1, "exists already", "--if-not-exists")
	cpCmd(t, cpTable, "checkpoint", "create-table", "--if-not-exists").want(t, 0, "exists already")
	cpCmd(t, cpTable, "checkpoint", "create-table", "--read-capacity", "5").want(t, 2, "set both to 1 or more, or neither")
	cpCmd(t, "ab", "checkpoint", "create-table").want(t, 2, `--checkpoint-table "ab": want 3 to 255 characters`)

	// A commits table is no checkpoint table.
	table := newTable(t)
	cpCmd(t, table, "checkpoint", "create-table", "--if-not-exists").want(t, 1, "exists but does not conform")
	if _, _, err := store.DescribeTable(t.Context(), client, store.Config{TableName: table}); err != nil {
		t.Errorf("the commits table after create-table --if-not-exists: %v", err)
	}
}
