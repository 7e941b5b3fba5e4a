package cli_test

import (
	"strings"
	"testing"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// TestBucketsMismatchRefused: on a table of one bucket, --buckets 2 is
// refused by every command that reads or writes commits, with a message
// that names the flag (or its variable) and the count the table agrees
// with, and nothing is written; the right count works.
func TestBucketsMismatchRefused(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	cmd(t, table, appendInput, "append").want(t, 0)
	count := func() int64 {
		n, err := store.CountItems(t.Context(), ddbtest.Client(t), store.Config{TableName: table})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	cpTable := newCheckpointTable(t)
	for _, args := range [][]string{
		{"scan"},
		{"tail"},
		{"tail", "--follow"},
		{"query", "--aggregate", "acc-1"},
		{"append"},
		{"checkpoint", "list", "--checkpoint-table", cpTable},
	} {
		r := cmd(t, table, `{"aggregateId":"acc-9","version":0,"events":[1]}`+"\n", append(args, "--buckets", "2")...)
		if r.code != 2 || !strings.Contains(r.stderr, "--buckets 2: does not match table "+table) ||
			!strings.Contains(r.stderr, `is in index bucket "t"`) || !strings.Contains(r.stderr, "(--buckets 1)") {
			t.Errorf("%q --buckets 2: exit %d, stderr %q; want exit 2 naming --buckets and the table's count", args, r.code, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("%q --buckets 2 printed %q", args, r.stdout)
		}
	}
	if n := count(); n != before {
		t.Errorf("the table holds %d items after the refusals, want %d: something was written", n, before)
	}
	// The variable is named when it set the count.
	r := run(t, map[string]string{"EVENTSTORE_BUCKETS": "3"}, "", append([]string{"scan"}, on(t, table)...)...)
	r.want(t, 2, "EVENTSTORE_BUCKETS=3: does not match table")
	// table describe lists it among the differences.
	r = cmd(t, table, "", "table", "describe", "--buckets", "2")
	r.want(t, 1, "index buckets: --buckets 2")
	// The right count reads everything.
	r = cmd(t, table, "", "scan")
	r.want(t, 0)
	if len(lines(r.stdout)) != int(before) {
		t.Errorf("scan printed %d commits, want %d", len(lines(r.stdout)), before)
	}
}

// TestBucketsOnABucketedTable: a table of 4 buckets is read with 4, and
// refused with 1, the default.
func TestBucketsOnABucketedTable(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	var in strings.Builder
	for i := range 12 {
		in.WriteString(`{"aggregateId":"agg-` + string(rune('a'+i)) + `","version":0,"events":[1]}` + "\n")
	}
	cmd(t, table, in.String(), "append", "--buckets", "4").want(t, 0)
	r := cmd(t, table, "", "scan", "--buckets", "4")
	r.want(t, 0)
	if n := len(lines(r.stdout)); n != 12 {
		t.Errorf("scan --buckets 4 printed %d commits, want 12", n)
	}
	r = cmd(t, table, "", "scan")
	r.want(t, 2, "--buckets 1: does not match table", "written with 4")
}
