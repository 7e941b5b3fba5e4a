package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestMain(m *testing.M) {
	// The commands load the SDK's default configuration from the process
	// environment: give it the static credentials DynamoDB Local gets from
	// ddbtest's clients, a region, and keep it away from the instance
	// metadata service and the developer's profiles.
	set := map[string]string{
		"AWS_ACCESS_KEY_ID":           "local",
		"AWS_SECRET_ACCESS_KEY":       "local",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	}
	if os.Getenv("AWS_REGION") == "" {
		set["AWS_REGION"] = "us-east-1"
	}
	for k, v := range set {
		_ = os.Setenv(k, v)
	}
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "EVENTSTORE_TABLE", "EVENTSTORE_INDEX", "EVENTSTORE_BUCKETS"} {
		_ = os.Unsetenv(k)
	}
	ddbtest.Main(m)
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the command line in-process with env as its EVENTSTORE_*
// variables.
func run(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr, func(k string) string { return env[k] })
	return result{code, stdout.String(), stderr.String()}
}

// on returns the flags that point a data command at the emulator and table.
func on(t *testing.T, table string) []string {
	return []string{"--endpoint", ddbtest.Endpoint(t), "--region", os.Getenv("AWS_REGION"), "--table", table}
}

// cmd runs the data command args on table.
func cmd(t *testing.T, table, stdin string, args ...string) result {
	t.Helper()
	return run(t, nil, stdin, append(args, on(t, table)...)...)
}

func (r result) want(t *testing.T, code int, stderrHas ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not contain %q:\n%s", s, r.stderr)
		}
	}
}

// newTable creates a commits table for the test with the store and deletes
// it after.
func newTable(t *testing.T) string {
	t.Helper()
	client := ddbtest.Client(t)
	cfg := store.Config{TableName: ddbtest.TableName(t)}
	if err := store.CreateTable(t.Context(), client, cfg, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	return cfg.TableName
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func decode(t *testing.T, jsonLines string) []store.Commit {
	t.Helper()
	var out []store.Commit
	for _, l := range lines(jsonLines) {
		var c store.Commit
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		out = append(out, c)
	}
	return out
}

func TestTableCommands(t *testing.T) {
	t.Parallel()
	table := ddbtest.TableName(t)
	client := ddbtest.Client(t)
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, store.Config{TableName: table}) })

	r := cmd(t, table, "", "table", "describe")
	r.want(t, 1, "table "+table+" not found")
	if r.stdout != "" {
		t.Errorf("describe of a missing table printed %q", r.stdout)
	}
	cmd(t, table, "", "table", "delete", "--yes").want(t, 1, "table "+table+" not found")
	cmd(t, table, "", "table", "delete").want(t, 1, "table "+table+" not found")
	cmd(t, table, "", "table", "delete", "--if-exists").want(t, 0)

	cmd(t, table, "", "table", "create").want(t, 0, "table "+table+" created")
	r = cmd(t, table, "", "table", "describe")
	r.want(t, 0)
	var got struct {
		TableName string `json:"tableName"`
		Status    string `json:"status"`
		KeySchema []struct {
			AttributeName, KeyType, AttributeType string
		} `json:"keySchema"`
		Index *struct {
			Name       string `json:"name"`
			Status     string `json:"status"`
			Projection string `json:"projection"`
			KeySchema  []struct {
				AttributeName, KeyType, AttributeType string
			} `json:"keySchema"`
		} `json:"index"`
		Stream struct {
			Enabled  bool   `json:"enabled"`
			ViewType string `json:"viewType"`
			ARN      string `json:"arn"`
		} `json:"stream"`
		ItemCount   *int64    `json:"itemCount"`
		BillingMode string    `json:"billingMode"`
		Mismatches  *[]string `json:"mismatches"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("describe output: %v\n%s", err, r.stdout)
	}
	keys := func(ks []struct{ AttributeName, KeyType, AttributeType string }) string {
		var b strings.Builder
		for _, k := range ks {
			b.WriteString(k.AttributeName + ":" + k.KeyType + ":" + k.AttributeType + " ")
		}
		return b.String()
	}
	switch {
	case got.TableName != table, got.Status != "ACTIVE", got.BillingMode != "PAY_PER_REQUEST":
		t.Errorf("describe: name %q status %q billing %q", got.TableName, got.Status, got.BillingMode)
	case keys(got.KeySchema) != "aggregateId:HASH:S version:RANGE:N ":
		t.Errorf("describe: key schema %s", keys(got.KeySchema))
	case got.Index == nil || got.Index.Name != store.DefaultIndexName || got.Index.Status != "ACTIVE" || got.Index.Projection != "ALL" ||
		keys(got.Index.KeySchema) != "active:HASH:S commitId:RANGE:S ":
		t.Errorf("describe: index %+v", got.Index)
	case !got.Stream.Enabled || got.Stream.ViewType != "NEW_IMAGE" || got.Stream.ARN == "":
		t.Errorf("describe: stream %+v", got.Stream)
	case got.ItemCount == nil || got.Mismatches == nil || len(*got.Mismatches) != 0:
		t.Errorf("describe: itemCount %v mismatches %v", got.ItemCount, got.Mismatches)
	}

	cmd(t, table, "", "table", "create").want(t, 1, "table "+table+" exists already", "--if-not-exists")
	cmd(t, table, "", "table", "create", "--if-not-exists").want(t, 0, "exists already")

	cmd(t, table, "", "table", "delete").want(t, 4, "table "+table+" holds 0 commits", "add --yes")
	cmd(t, table, "", "table", "describe").want(t, 0)
	cmd(t, table, "", "table", "delete", "--yes").want(t, 0, "table "+table+" deleted, with the 0 commits it held")
	cmd(t, table, "", "table", "describe").want(t, 1, "not found")
}

func TestTableCreateProvisionedWithoutStream(t *testing.T) {
	t.Parallel()
	table := ddbtest.TableName(t)
	client := ddbtest.Client(t)
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, store.Config{TableName: table}) })
	cmd(t, table, "", "table", "create", "--read-capacity", "2").want(t, 2, "--read-capacity 2, --write-capacity 0")
	cmd(t, table, "", "table", "describe").want(t, 1, "not found")

	cmd(t, table, "", "table", "create", "--read-capacity", "2", "--write-capacity", "3", "--no-stream").want(t, 0)
	r := cmd(t, table, "", "table", "describe")
	r.want(t, 0)
	var got struct {
		BillingMode                 string
		ReadCapacity, WriteCapacity int64
		Stream                      struct{ Enabled bool }
		Mismatches                  []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.BillingMode != "PROVISIONED" || got.ReadCapacity != 2 || got.WriteCapacity != 3 || got.Stream.Enabled || len(got.Mismatches) != 0 {
		t.Errorf("describe: %+v\n%s", got, r.stdout)
	}
}

func TestTableNotConforming(t *testing.T) {
	t.Parallel()
	client := ddbtest.Client(t)
	table := ddbtest.TableName(t)
	_, err := client.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("aggregateId"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("aggregateId"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, store.Config{TableName: table}) })

	r := cmd(t, table, "", "table", "describe")
	r.want(t, 1, "does not conform", "index "+store.DefaultIndexName+": missing")
	var got struct {
		Index      *json.RawMessage
		Mismatches []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("describe output: %v\n%s", err, r.stdout)
	}
	if got.Index != nil || len(got.Mismatches) != 2 {
		t.Errorf("describe: index %s, mismatches %q", *got.Index, got.Mismatches)
	}
	cmd(t, table, "", "table", "create", "--if-not-exists").want(t, 1, "exists but does not conform")
}

// TestTableCreateIfNotExistsAndTheStream: an existing table must have the
// stream unless --no-stream; without one it conforms only to --no-stream,
// as the original package's tables do.
func TestTableCreateIfNotExistsAndTheStream(t *testing.T) {
	t.Parallel()
	client := ddbtest.Client(t)
	table := ddbtest.TableName(t)
	cfg := store.Config{TableName: table}
	if err := store.CreateTable(t.Context(), client, cfg, store.TableOptions{NoStream: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })

	cmd(t, table, "", "table", "create", "--if-not-exists").
		want(t, 1, "table "+table+" exists but does not conform: stream: disabled, want NEW_IMAGE")
	cmd(t, table, "", "table", "create", "--if-not-exists", "--no-stream").want(t, 0, "table "+table+" exists already")
	// describe asks for what reads and appends need: no stream.
	cmd(t, table, "", "table", "describe").want(t, 0)

	// A table with its stream conforms either way.
	withStream := newTable(t)
	cmd(t, withStream, "", "table", "create", "--if-not-exists").want(t, 0, "exists already")
	cmd(t, withStream, "", "table", "create", "--if-not-exists", "--no-stream").want(t, 0, "exists already")
}

// TestReadsOfAMissingTable: every data command names a missing table the
// same way.
func TestReadsOfAMissingTable(t *testing.T) {
	t.Parallel()
	table := ddbtest.TableName(t)
	for _, args := range [][]string{{"scan"}, {"query", "--aggregate", "a"}} {
		r := cmd(t, table, "", args...)
		r.want(t, 1, args[0]+": table "+table+" not found")
		if r.stdout != "" {
			t.Errorf("%s printed %q", args[0], r.stdout)
		}
	}
	cmd(t, table, `{"aggregateId":"a","version":0,"events":[1]}`, "append").want(t, 1, "append: line 1: table "+table+" not found")
}

// appendInput is a few commits to two aggregates, with blank lines, a CRLF
// line end, spaces in events and no newline at the end.
const appendInput = `{"aggregateId":"acc-1","version":0,"events":[{"type":"opened","owner":"Zoë <z@example.com>"}]}

{"aggregateId":"acc-2","version":0,"events":[1,"two",null]}
   {"version":1, "aggregateId":"acc-1", "events":[ {"type": "deposited", "amount": 10} ]}` + "\r\n" + `
{"aggregateId":"acc-1","version":2,"events":[{"type":"closed"}]}
{"aggregateId":"acc-2","version":1,"events":[{}]}`

func TestAppendQueryScan(t *testing.T) {
	t.Parallel()
	table := newTable(t)

	r := cmd(t, table, appendInput, "append")
	r.want(t, 0)
	if r.stderr != "" {
		t.Errorf("stderr: %s", r.stderr)
	}
	appended := lines(r.stdout)
	commits := decode(t, r.stdout)
	want := []struct {
		id      string
		version int64
		events  string
	}{
		{"acc-1", 0, `[{"type":"opened","owner":"Zoë <z@example.com>"}]`},
		{"acc-2", 0, `[1,"two",null]`},
		{"acc-1", 1, `[{"type":"deposited","amount":10}]`},
		{"acc-1", 2, `[{"type":"closed"}]`},
		{"acc-2", 1, `[{}]`},
	}
	if len(commits) != len(want) {
		t.Fatalf("append printed %d commits, want %d:\n%s", len(commits), len(want), r.stdout)
	}
	for i, c := range commits {
		w := want[i]
		if c.AggregateID != w.id || c.Version != w.version || string(c.Events) != w.events ||
			c.CommitID != store.FormatCommitID(c.CommittedAt, c.AggregateID) {
			t.Errorf("commit %d = %+v (events %s), want %s version %d events %s", i, c, c.Events, w.id, w.version, w.events)
		}
	}
	// The output is the commit shape, keys in order, as the original
	// package prints it.
	if !strings.HasPrefix(appended[0], `{"commitId":"`) || !strings.Contains(appended[0], `,"aggregateId":"acc-1","version":0,"events":[{"type":"opened","owner":"Zoë <z@example.com>"}]}`) {
		t.Errorf("line 0 = %s", appended[0])
	}

	byAggregate := func(id string, from int64) []string {
		var out []string
		for i, c := range commits {
			if c.AggregateID == id && c.Version >= from {
				out = append(out, appended[i])
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"acc-1", []string{"--aggregate", "acc-1"}, byAggregate("acc-1", 0)},
		{"acc-2", []string{"--aggregate", "acc-2"}, byAggregate("acc-2", 0)},
		{"from version 1 inclusive", []string{"--aggregate", "acc-1", "--from-version", "1"}, byAggregate("acc-1", 1)},
		{"from version past the end", []string{"--aggregate", "acc-1", "--from-version", "3"}, nil},
		{"unknown aggregate", []string{"--aggregate", "nobody"}, nil},
	} {
		r := cmd(t, table, "", append([]string{"query"}, tc.args...)...)
		r.want(t, 0)
		if got := lines(r.stdout); !slices.Equal(got, tc.want) {
			t.Errorf("query %s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}

	// Scan: every commit in Position order.
	order := make([]int, len(commits))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return commits[a].Position().Compare(commits[b].Position()) })
	var all []string
	for _, i := range order {
		all = append(all, appended[i])
	}
	r = cmd(t, table, "", "scan")
	r.want(t, 0)
	if got := lines(r.stdout); !slices.Equal(got, all) {
		t.Errorf("scan:\n got %q\nwant %q", got, all)
	}
	// From the third commit's id on, inclusive.
	from := commits[order[2]].CommitID
	var fromThird []string
	for _, i := range order {
		if commits[i].CommitID >= from {
			fromThird = append(fromThird, appended[i])
		}
	}
	r = cmd(t, table, "", "scan", "--from-commit-id", from)
	r.want(t, 0)
	if got := lines(r.stdout); !slices.Equal(got, fromThird) || len(got) < 3 {
		t.Errorf("scan --from-commit-id %s:\n got %q\nwant %q", from, got, fromThird)
	}
	r = cmd(t, table, "", "scan", "--from-commit-id", "99991231235959999")
	r.want(t, 0)
	if r.stdout != "" {
		t.Errorf("scan from the far future printed %q", r.stdout)
	}
}

func TestAppendConflict(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	cmd(t, table, `{"aggregateId":"acc-1","version":0,"events":[1]}`, "append").want(t, 0)

	r := cmd(t, table, `{"aggregateId":"acc-1","version":1,"events":[2]}
{"aggregateId":"acc-1","version":0,"events":["again"]}
{"aggregateId":"acc-1","version":2,"events":[3]}
`, "append")
	r.want(t, 3, "line 2", `aggregate "acc-1"`, "version 0", "version conflict")
	if got := decode(t, r.stdout); len(got) != 1 || got[0].Version != 1 {
		t.Errorf("printed %q, want the commit of line 1 only", r.stdout)
	}
	q := cmd(t, table, "", "query", "--aggregate", "acc-1")
	q.want(t, 0)
	got := decode(t, q.stdout)
	if len(got) != 2 || got[0].Version != 0 || string(got[0].Events) != "[1]" || got[1].Version != 1 {
		t.Errorf("after the conflict the aggregate holds %s", q.stdout)
	}
}

func TestAppendBadInput(t *testing.T) {
	t.Parallel()
	const good = `{"aggregateId":"ok","version":0,"events":[1]}`
	for _, tc := range []struct {
		name, line2 string
		stderr      []string
	}{
		{"malformed JSON", `{"aggregateId":"bad","version":0,"events":[1]`, []string{"malformed JSON"}},
		{"not an object", `["bad",0,[1]]`, []string{"want a JSON object"}},
		{"trailing data", `{"aggregateId":"bad","version":0,"events":[1]} {}`, []string{"more after the object"}},
		{"missing aggregateId", `{"version":0,"events":[1]}`, []string{"missing aggregateId"}},
		{"missing version", `{"aggregateId":"bad","events":[1]}`, []string{"missing version"}},
		{"missing events", `{"aggregateId":"bad","version":0}`, []string{"missing events"}},
		{"empty aggregateId", `{"aggregateId":"","version":0,"events":[1]}`, []string{"empty aggregate id"}},
		{"negative version", `{"aggregateId":"bad","version":-1,"events":[1]}`, []string{"negative version"}},
		{"fractional version", `{"aggregateId":"bad","version":1.5,"events":[1]}`, []string{"version"}},
		{"empty events", `{"aggregateId":"bad","version":0,"events":[]}`, []string{"no events"}},
		{"events not an array", `{"aggregateId":"bad","version":0,"events":{"a":1}}`, []string{"not a JSON array"}},
		{"unknown field", `{"aggregateId":"bad","version":0,"events":[1],"meta":{}}`, []string{`unknown field "meta"`}},
		{"commitId given", `{"commitId":"x","aggregateId":"bad","version":0,"events":[1]}`, []string{`unknown field "commitId"`}},
		{"too long", `{"aggregateId":"bad","version":0,"events":["` + strings.Repeat("x", 1<<20) + `"]}`, []string{"longer than"}},
		{"item too large", `{"aggregateId":"bad","version":0,"events":["` + strings.Repeat("x", store.MaxItemBytes) + `"]}`, []string{"item too large"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			table := newTable(t)
			third := `{"aggregateId":"ok","version":1,"events":[2]}`
			r := cmd(t, table, good+"\n"+tc.line2+"\n"+third+"\n", "append")
			r.want(t, 2, append([]string{"line 2: "}, tc.stderr...)...)
			if got := decode(t, r.stdout); len(got) != 1 || got[0].AggregateID != "ok" || got[0].Version != 0 {
				t.Errorf("printed %q, want the commit of line 1 only", r.stdout)
			}
			s := cmd(t, table, "", "scan")
			s.want(t, 0)
			if got := decode(t, s.stdout); len(got) != 1 || got[0].AggregateID != "ok" || got[0].Version != 0 {
				t.Errorf("the table holds %q, want the commit of line 1 only", s.stdout)
			}
		})
	}
}

func TestAppendEmptyInput(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	r := cmd(t, table, "\n  \n", "append")
	r.want(t, 0)
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestAppendMissingTable(t *testing.T) {
	t.Parallel()
	r := cmd(t, ddbtest.TableName(t), `{"aggregateId":"a","version":0,"events":[1]}`, "append")
	r.want(t, 1, "line 1", "not found")
}

func TestReadCorruptItem(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	r := cmd(t, table, `{"aggregateId":"acc-1","version":0,"events":[1]}
{"aggregateId":"acc-1","version":2,"events":[3]}
`, "append")
	r.want(t, 0)
	good := lines(r.stdout)

	// Version 1, written by someone else, with events that are not JSON.
	at := time.Now().UnixMilli()
	commitID := store.FormatCommitID(at, "acc-1")
	_, err := ddbtest.Client(t).PutItem(t.Context(), &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item: map[string]types.AttributeValue{
			"aggregateId": &types.AttributeValueMemberS{Value: "acc-1"},
			"version":     &types.AttributeValueMemberN{Value: "1"},
			"commitId":    &types.AttributeValueMemberS{Value: commitID},
			"committedAt": &types.AttributeValueMemberN{Value: strconv.FormatInt(at, 10)},
			"events":      &types.AttributeValueMemberS{Value: "{not json"},
			"active":      &types.AttributeValueMemberS{Value: "t"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"query", "--aggregate", "acc-1"}, {"scan"}} {
		r := cmd(t, table, "", args...)
		r.want(t, 1, `aggregateId="acc-1" version=1 commitId="`+commitID+`"`, `attribute "events"`, "1 corrupt item not printed")
		if got := lines(r.stdout); !slices.Equal(got, good) {
			t.Errorf("%s printed\n%q\nwant\n%q", args[0], got, good)
		}
	}
}

func TestEnvironmentDefaults(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	ep, region := ddbtest.Endpoint(t), os.Getenv("AWS_REGION")
	env := map[string]string{"EVENTSTORE_TABLE": table, "EVENTSTORE_BUCKETS": "4"}

	r := run(t, env, `{"aggregateId":"a","version":0,"events":[1]}
{"aggregateId":"b","version":0,"events":[1]}
{"aggregateId":"c","version":0,"events":[1]}
`, "append", "--endpoint", ep, "--region", region)
	r.want(t, 0)
	appended := lines(r.stdout)

	r = run(t, env, "", "scan", "--endpoint", ep, "--region", region)
	r.want(t, 0)
	if got := lines(r.stdout); len(got) != 3 {
		t.Errorf("scan with EVENTSTORE_BUCKETS=4 printed %q, want %q", got, appended)
	}
	// The flag wins: one bucket ("t") holds none of these commits, which
	// the check of the count against the table says.
	r = run(t, env, "", "scan", "--endpoint", ep, "--region", region, "--buckets", "1")
	r.want(t, 2, "--buckets 1: does not match table")
	if r.stdout != "" {
		t.Errorf("scan --buckets 1 printed %q", r.stdout)
	}
	// A bad variable is an error only when the flag does not override it.
	bad := map[string]string{"EVENTSTORE_TABLE": "no-such-table", "EVENTSTORE_BUCKETS": "many"}
	run(t, bad, "", "scan", "--endpoint", ep, "--region", region).want(t, 2, `EVENTSTORE_BUCKETS="many"`)
	r = run(t, bad, "", "scan", "--endpoint", ep, "--region", region, "--buckets", "4", "--table", table)
	r.want(t, 0)
	if got := lines(r.stdout); len(got) != 3 {
		t.Errorf("scan with flags printed %q", got)
	}
	// EVENTSTORE_INDEX names the index.
	run(t, map[string]string{"EVENTSTORE_TABLE": table, "EVENTSTORE_INDEX": "otherIndex"}, "", "scan", "--endpoint", ep, "--region", region).
		want(t, 1, `index "otherIndex"`)
}

func TestUsage(t *testing.T) {
	t.Parallel()
	ep := "--endpoint=" + ddbtest.Endpoint(t)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{name: "no command", code: 2, stderr: []string{"Usage: eventstore <command>", "table create", "append", "query", "scan"}},
		{name: "unknown command", args: []string{"frob"}, code: 2, stderr: []string{`eventstore: unknown command "frob"`, "table describe"}},
		{name: "flag before command", args: []string{"--table", "x", "scan"}, code: 2, stderr: []string{"flags go after the command"}},
		{name: "table alone", args: []string{"table"}, code: 2, stderr: []string{"Usage: eventstore table <command>", "create", "delete", "describe"}},
		{name: "unknown table command", args: []string{"table", "drop"}, code: 2, stderr: []string{`table: unknown command "drop"`}},
		{name: "undefined flag", args: []string{"append", "--nope"}, code: 2, stderr: []string{"append: flag provided but not defined: -nope", "eventstore append --help"}},
		{name: "bad buckets", args: []string{"scan", "--buckets", "x"}, code: 2, stderr: []string{"-buckets"}},
		{name: "buckets out of range", args: []string{"scan", ep, "--buckets", "257"}, code: 2, stderr: []string{"--buckets 257"}},
		{name: "bad from-version", args: []string{"query", "--aggregate", "a", "--from-version", "x"}, code: 2, stderr: []string{"-from-version"}},
		{name: "negative from-version", args: []string{"query", "--aggregate", "a", "--from-version", "-1"}, code: 2, stderr: []string{"--from-version -1"}},
		{name: "missing aggregate", args: []string{"query"}, code: 2, stderr: []string{"--aggregate is required"}},
		{name: "unexpected argument", args: []string{"scan", "extra"}, code: 2, stderr: []string{`unexpected argument "extra"`}},
		{name: "bad capacity", args: []string{"table", "create", "--write-capacity", "x"}, code: 2, stderr: []string{"-write-capacity"}},
		{name: "bad endpoint", args: []string{"scan", "--endpoint", "localhost:8000"}, code: 2, stderr: []string{`--endpoint "localhost:8000"`}},
		{name: "short table name", args: []string{"scan", ep, "--table", "ab"}, code: 2, stderr: []string{"--table", `"ab"`}},
		{name: "empty table name", args: []string{"scan", ep, "--table", ""}, code: 2, stderr: []string{"--table"}},
		{name: "short table name from the environment", env: map[string]string{"EVENTSTORE_TABLE": "ab"}, args: []string{"scan", ep},
			code: 2, stderr: []string{`scan: EVENTSTORE_TABLE="ab": want 3 to 255 characters`}},
		{name: "flag wins over a bad variable", env: map[string]string{"EVENTSTORE_TABLE": "okay"}, args: []string{"scan", ep, "--table", "ab"},
			code: 2, stderr: []string{`scan: --table "ab": want 3 to 255 characters`}},
		{name: "short index name", args: []string{"scan", ep, "--index", "ix"}, code: 2, stderr: []string{`scan: --index "ix": want 3 to 255 characters`, "eventstore scan --help"}},
		{name: "long index name", args: []string{"query", ep, "--aggregate", "a", "--index", strings.Repeat("i", 256)}, code: 2, stderr: []string{`--index "iii`, "want 3 to 255 characters"}},
		{name: "zero buckets", args: []string{"scan", ep, "--buckets", "0"}, code: 2, stderr: []string{"scan: --buckets 0: want 1 to 256"}},
		{name: "negative buckets", args: []string{"append", ep, "--buckets", "-3"}, code: 2, stderr: []string{"append: --buckets -3: want 1 to 256"}},
		{name: "bad EVENTSTORE_BUCKETS", env: map[string]string{"EVENTSTORE_BUCKETS": "0"}, args: []string{"scan"}, code: 2, stderr: []string{`EVENTSTORE_BUCKETS="0"`}},
		{name: "help", args: []string{"--help"}, stdout: []string{"Usage: eventstore <command>", "table create", "Exit status"}},
		{name: "-h", args: []string{"-h"}, stdout: []string{"Usage: eventstore <command>"}},
		{name: "help command", args: []string{"help"}, stdout: []string{"Usage: eventstore <command>"}},
		{name: "help table", args: []string{"help", "table"}, stdout: []string{"Usage: eventstore table <command>"}},
		{name: "help table create", args: []string{"help", "table", "create"}, stdout: []string{"Usage: eventstore table create", "--if-not-exists"}},
		{name: "help unknown", args: []string{"help", "frob"}, code: 2, stderr: []string{`help: unknown command "frob"`}},
		{name: "table --help", args: []string{"table", "--help"}, stdout: []string{"Usage: eventstore table <command>"}},
		{name: "defaults from the environment", env: map[string]string{"EVENTSTORE_TABLE": "fromEnv", "EVENTSTORE_INDEX": "ixEnv", "EVENTSTORE_BUCKETS": "8"},
			args: []string{"scan", "--help"}, stdout: []string{`(default "fromEnv")`, `(default "ixEnv")`, "(default 8)", "$EVENTSTORE_TABLE", "$EVENTSTORE_INDEX", "$EVENTSTORE_BUCKETS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.env, "", tc.args...)
			r.want(t, tc.code, tc.stderr...)
			for _, s := range tc.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, r.stdout)
				}
			}
			if tc.code != 0 && r.stdout != "" {
				t.Errorf("stdout of a usage error: %q", r.stdout)
			}
			if tc.code == 0 && r.stderr != "" {
				t.Errorf("stderr of help: %q", r.stderr)
			}
		})
	}
}

// TestEveryCommandHasHelp asks each command for its help, with -h and
// --help.
func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	for _, c := range [][]string{{"table", "create"}, {"table", "delete"}, {"table", "describe"}, {"append"}, {"query"}, {"scan"}} {
		for _, h := range []string{"-h", "--help"} {
			r := run(t, nil, "", append(c, h)...)
			r.want(t, 0)
			name := strings.Join(c, " ")
			for _, s := range []string{"Usage: eventstore " + name, "Flags:", "--table NAME", "--index NAME", "--buckets N", "--endpoint URL", "--region REGION",
				`(default "commitsByAggregateIdAndVersion")`, `(default "commitsByCommitId")`, "(default 1)"} {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("%s %s: help does not contain %q:\n%s", name, h, s, r.stdout)
				}
			}
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestInterrupted cancels append while it waits for input: what it appended
// was printed as it landed, and it returns 130.
func TestInterrupted(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pw.Close() })
	go func() { _, _ = io.WriteString(pw, `{"aggregateId":"a","version":0,"events":[1]}`+"\n") }()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"append"}, on(t, table)...), pr, &stdout, &stderr, nil)
	}()
	ddbtest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(stdout.String(), `"aggregateId":"a"`) },
		"append did not print the first commit while waiting for more input; stderr: %s", stderr.String())
	cancel()
	select {
	case code := <-done:
		if code != cli.ExitInterrupted || !strings.Contains(stderr.String(), "append: interrupted") {
			t.Errorf("exit status %d, stderr %q; want 130, interrupted", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append did not return after its context was cancelled")
	}
	if got := lines(stdout.String()); len(got) != 1 {
		t.Errorf("stdout %q", got)
	}

	// A scan whose context is cancelled stops the same way.
	var out, errb bytes.Buffer
	code := cli.Run(ctx, append([]string{"scan"}, on(t, table)...), nil, &out, &errb, nil)
	if code != cli.ExitInterrupted || !strings.Contains(errb.String(), "scan: interrupted") {
		t.Errorf("scan: exit status %d, stderr %q", code, errb.String())
	}
}
