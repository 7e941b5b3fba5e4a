package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// role is a principal the policies are for; a set of roles is a bit mask.
type role uint8

const (
	writer   role = 1 << iota // an application that appends and reads
	worker                    // the subscription worker daemon
	operator                  // a person using the CLI
)

// roles lists each role's policy, as a plain document and as the managed
// policy of iam.json.
var roles = []struct {
	role     role
	name     string
	document string
	policyID string
}{
	{writer, "writer", "iam/writer-policy.json", "WriterPolicy"},
	{worker, "worker", "iam/worker-policy.json", "WorkerPolicy"},
	{operator, "operator", "iam/operator-policy.json", "OperatorPolicy"},
}

// Resources, as the policies write them: placeholders in Fn::Sub syntax for
// the partition, region and account, and for the template parameters.
const (
	tableARN        = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/"
	commitsTable    = tableARN + "${CommitsTableName}"
	commitsIndex    = commitsTable + "/index/${IndexName}"
	commitsStreams  = commitsTable + "/stream/*" // every stream of the table: re-enabling one gives a new ARN
	checkpointTable = tableARN + "${CheckpointTableName}"
	anyResource     = "*"
)

// The interfaces that declare the DynamoDB calls each package makes.
var (
	storeAPI           = reflect.TypeFor[store.API]()
	storeTableAPI      = reflect.TypeFor[store.TableAPI]()
	storeInspectAPI    = reflect.TypeFor[store.InspectAPI]()
	checkpointAPI      = reflect.TypeFor[dynamocheckpoint.API]()
	checkpointTableAPI = reflect.TypeFor[dynamocheckpoint.TableAPI]()
	streamsAPI         = reflect.TypeFor[subscribe.StreamsAPI]()
	tableDescriber     = reflect.TypeFor[subscribe.TableDescriber]()
)

// permission is one DynamoDB call a component makes, the IAM action that
// authorizes it, on which resource, and the roles that make it.
type permission struct {
	// api declares the call; nil for calls of code still to come.
	api  reflect.Type
	call string
	// table is "commits" or "checkpoints": the table the call is about.
	table    string
	action   string
	resource string
	by       role
	// code is where the call is made.
	code string
}

// permissions is every DynamoDB call the code makes, by role. The policies
// must allow exactly these actions on exactly these resources, and
// TestPermissionsCoverTheCode checks the table against the interfaces that
// declare the calls.
var permissions = []permission{
	// The store (store.API). Applications and the CLI append and read; the
	// worker reads through the same Store (subscribe.Reader).
	{storeAPI, "PutItem", "commits", "dynamodb:PutItem", commitsTable, writer | operator,
		"store/append.go: Store.Append, a conditional PutItem"},
	// TransactWriteItems is not an IAM action: each Put of the transaction
	// is authorized as dynamodb:PutItem (a ConditionCheck would need
	// dynamodb:ConditionCheckItem; the store makes none).
	{storeAPI, "TransactWriteItems", "commits", "dynamodb:PutItem", commitsTable, writer | operator,
		"store/append.go: Store.AppendAll, a TransactWriteItems of conditional Puts"},
	{storeAPI, "Query", "commits", "dynamodb:Query", commitsTable, writer | worker | operator,
		"store/read.go: Store.Query, consistent Query of the table; the worker's gap repair in subscribe/sequencer.go and subscribe/index.go"},
	{storeAPI, "Query", "commits", "dynamodb:Query", commitsIndex, writer | worker | operator,
		"store/read.go: Store.Scan (newBucketReader), Query of the commit-order index; the worker's index source, subscribe/index.go"},

	// The bucket count check and the item count (store.InspectAPI): the
	// worker daemon at start (daemon/buckets.go), every CLI command that
	// reads or writes commits (internal/cli/storeflags.go), table delete.
	{storeInspectAPI, "Scan", "commits", "dynamodb:Scan", commitsTable, worker | operator,
		"store/inspect.go: CheckBuckets, one Scan page of a sample of items; CountItems, a Select COUNT Scan of the table"},
	{storeInspectAPI, "Query", "commits", "dynamodb:Query", commitsIndex, worker | operator,
		"store/inspect.go: CheckBuckets, the first item of the bucket values next to the configured ones"},

	// Table management (store.TableAPI, dynamocheckpoint.TableAPI, both
	// internal/ddbtable.API): the CLI's table commands, internal/cli/table.go.
	{storeTableAPI, "CreateTable", "commits", "dynamodb:CreateTable", commitsTable, operator,
		"store/table.go: CreateTable, through internal/ddbtable.Create"},
	{storeTableAPI, "DescribeTable", "commits", "dynamodb:DescribeTable", commitsTable, operator,
		"store/table.go: CreateTable (waiting), DescribeTable, DescribeTableFor, DeleteTable (waiting)"},
	{storeTableAPI, "DeleteTable", "commits", "dynamodb:DeleteTable", commitsTable, operator,
		"store/table.go: DeleteTable"},
	{checkpointTableAPI, "CreateTable", "checkpoints", "dynamodb:CreateTable", checkpointTable, operator,
		"checkpoint/dynamocheckpoint/table.go: CreateTable"},
	{checkpointTableAPI, "DescribeTable", "checkpoints", "dynamodb:DescribeTable", checkpointTable, operator,
		"checkpoint/dynamocheckpoint/table.go: CreateTable (waiting), DescribeTable, DeleteTable (waiting)"},
	{checkpointTableAPI, "DeleteTable", "checkpoints", "dynamodb:DeleteTable", checkpointTable, operator,
		"checkpoint/dynamocheckpoint/table.go: DeleteTable"},

	// Checkpoints and parked commits (dynamocheckpoint.API). The worker
	// claims, saves and releases (subscribe/run.go), parks, lists and
	// unparks (subscribe/dispatch.go, subscribe/run.go); it never loads a
	// checkpoint by key or lists every subscription. The CLI does it all.
	{checkpointAPI, "UpdateItem", "checkpoints", "dynamodb:UpdateItem", checkpointTable, worker | operator,
		"checkpoint/dynamocheckpoint/checkpoints.go: Claim, Save, Release, Set"},
	{checkpointAPI, "PutItem", "checkpoints", "dynamodb:PutItem", checkpointTable, worker | operator,
		"checkpoint/dynamocheckpoint/parked.go: Park"},
	{checkpointAPI, "DeleteItem", "checkpoints", "dynamodb:DeleteItem", checkpointTable, worker | operator,
		"checkpoint/dynamocheckpoint/parked.go: Unpark"},
	{checkpointAPI, "Query", "checkpoints", "dynamodb:Query", checkpointTable, worker | operator,
		"checkpoint/dynamocheckpoint/parked.go: Parked; checkpoints.go: List"},
	{checkpointAPI, "GetItem", "checkpoints", "dynamodb:GetItem", checkpointTable, operator,
		"checkpoint/dynamocheckpoint/checkpoints.go: Load"},
	{checkpointAPI, "Scan", "checkpoints", "dynamodb:Scan", checkpointTable, operator,
		"checkpoint/dynamocheckpoint/checkpoints.go: List of every subscription"},

	// The stream source (subscribe.StreamsAPI, subscribe.TableDescriber):
	// subscribe/hybrid.go finds the table's current stream, and
	// subscribe/internal/streamreader reads it. The worker daemon runs it
	// for its stream and auto subscriptions; the CLI's tail --follow
	// --source stream|auto (internal/cli/tail.go) runs the same source,
	// with Config.Streams and Config.Tables set.
	{tableDescriber, "DescribeTable", "commits", "dynamodb:DescribeTable", commitsTable, worker | operator,
		"subscribe/hybrid.go: waitStreamARN, the table's LatestStreamArn"},
	{streamsAPI, "DescribeStream", "commits", "dynamodb:DescribeStream", commitsStreams, worker | operator,
		"subscribe/internal/streamreader: list the stream's shards"},
	{streamsAPI, "GetShardIterator", "commits", "dynamodb:GetShardIterator", commitsStreams, worker | operator,
		"subscribe/internal/streamreader: start reading a shard"},
	{streamsAPI, "GetRecords", "commits", "dynamodb:GetRecords", commitsStreams, worker | operator,
		"subscribe/internal/streamreader: read a shard"},
}

// wholeInterface is an interface a role calls every method of, on one
// table.
type wholeInterface struct {
	by    role
	api   reflect.Type
	table string
}

// wholeInterfaces are the interfaces a role calls every method of, on one
// table: each method needs a row of permissions for that role. (The worker
// makes only some of the store's and the checkpoint store's calls.)
var wholeInterfaces = []wholeInterface{
	{writer, storeAPI, "commits"},
	{operator, storeAPI, "commits"},
	{operator, storeTableAPI, "commits"},
	{operator, checkpointTableAPI, "checkpoints"},
	{operator, checkpointAPI, "checkpoints"},
	{worker, streamsAPI, "commits"},
	{worker, tableDescriber, "commits"},
	{worker, storeInspectAPI, "commits"},
	{operator, storeInspectAPI, "commits"},
	// eventstore tail --follow --source stream|auto.
	{operator, streamsAPI, "commits"},
	{operator, tableDescriber, "commits"},
}

// TestPermissionsCoverTheCode checks the permissions table against the
// code: every row's call is a method of the interface it names, and every
// method of an interface a role uses whole has a row. A call added to
// store.API or dynamocheckpoint.API fails here until the table, and so the
// policies, say who needs it.
func TestPermissionsCoverTheCode(t *testing.T) {
	t.Parallel()
	for _, p := range permissions {
		if p.api != nil {
			if _, ok := p.api.MethodByName(p.call); !ok {
				t.Errorf("%s has no method %s (row for %s)", p.api, p.call, p.code)
			}
		}
		if !strings.HasPrefix(p.action, "dynamodb:") {
			t.Errorf("row %s %s: action %q", p.api, p.call, p.action)
		}
	}
	for _, w := range wholeInterfaces {
		for i := range w.api.NumMethod() {
			m := w.api.Method(i).Name
			if !slices.ContainsFunc(permissions, func(p permission) bool {
				return p.api == w.api && p.call == m && p.table == w.table && p.by&w.by != 0
			}) {
				t.Errorf("%s calls %s.%s on the %s table, and no row of permissions says so", w.by, w.api, m, w.table)
			}
		}
	}
}

// streamSourceRunners are the packages that run the stream source, with
// the role each runs as: they set subscribe.Config.Streams (and Tables).
// The daemon does for its stream and auto subscriptions; the CLI for
// tail --follow --source stream|auto.
var streamSourceRunners = []struct {
	by  role
	dir string
}{
	{worker, "../daemon"},
	{operator, "../internal/cli"},
}

// TestStreamGrantsFollowTheCode checks that a role calls the stream
// source's interfaces whole exactly when the code it runs sets
// subscribe.Config's Streams and Tables: a package that stops (or starts)
// reading the stream fails here until wholeInterfaces, and so the
// policies, follow.
func TestStreamGrantsFollowTheCode(t *testing.T) {
	t.Parallel()
	for _, r := range streamSourceRunners {
		for _, f := range []struct {
			field string
			api   reflect.Type
		}{{"Streams", streamsAPI}, {"Tables", tableDescriber}} {
			sets, err := setsField(r.dir, f.field)
			if err != nil {
				t.Fatal(err)
			}
			whole := slices.ContainsFunc(wholeInterfaces, func(w wholeInterface) bool {
				return w.by == r.by && w.api == f.api
			})
			switch {
			case len(sets) != 0 && !whole:
				t.Errorf("%s sets .%s (%s), so the %s calls %s: add it to wholeInterfaces", r.dir, f.field, sets[0], r.by, f.api)
			case len(sets) == 0 && whole:
				t.Errorf("%s no longer sets .%s: the %s does not call %s, and its policy should not allow it", r.dir, f.field, r.by, f.api)
			}
		}
	}
}

// setsField returns where the Go files of dir (tests left out) assign to a
// field named field, as x.field = … or in a composite literal.
func setsField(dir, field string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var out []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for _, lhs := range n.Lhs {
					if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == field {
						out = append(out, fset.Position(sel.Pos()).String())
					}
				}
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && id.Name == field {
					out = append(out, fset.Position(id.Pos()).String())
				}
			}
			return true
		})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no Go files", dir)
	}
	return out, nil
}

func (r role) String() string {
	var names []string
	for _, ro := range roles {
		if r&ro.role != 0 {
			names = append(names, ro.name)
		}
	}
	return strings.Join(names, "|")
}

// policyDocument is an IAM policy in the subset the policies use. Decoding
// rejects anything else (Deny, NotAction, NotResource, Condition), which
// the checks below would misjudge.
type policyDocument struct {
	Version   string
	Statement []statement
}

type statement struct {
	Sid      string
	Effect   string
	Action   stringList
	Resource stringList
}

// stringList is a JSON string or array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = stringList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return fmt.Errorf("want a string or an array of strings: %w", err)
	}
	*l = ss
	return nil
}

func decodePolicy(data []byte) (policyDocument, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc policyDocument
	err := dec.Decode(&doc)
	return doc, err
}

var sidPattern = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// grant is an action on a resource; action in lower case, as IAM compares
// action names without case.
type grant struct{ action, resource string }

// policyProblems lists how doc differs from what r needs: the grammar the
// tests rely on, actions outside dynamodb: or with wildcards, needed grants
// missing and grants nothing needs.
func policyProblems(doc policyDocument, r role) []string {
	var out []string
	if doc.Version != "2012-10-17" {
		out = append(out, fmt.Sprintf("Version %q, want 2012-10-17", doc.Version))
	}
	if len(doc.Statement) == 0 {
		out = append(out, "no statements")
	}
	granted := map[grant]string{} // the action as written
	sids := map[string]bool{}
	for i, st := range doc.Statement {
		where := fmt.Sprintf("statement %d (%s)", i, st.Sid)
		if !sidPattern.MatchString(st.Sid) || sids[st.Sid] {
			out = append(out, fmt.Sprintf("%s: want a unique alphanumeric Sid", where))
		}
		sids[st.Sid] = true
		if st.Effect != "Allow" {
			out = append(out, fmt.Sprintf("%s: Effect %q, want Allow", where, st.Effect))
		}
		if len(st.Action) == 0 || len(st.Resource) == 0 {
			out = append(out, where+": no Action or no Resource")
		}
		for _, a := range st.Action {
			if !strings.HasPrefix(a, "dynamodb:") {
				out = append(out, fmt.Sprintf("%s: grants %q, outside dynamodb:", where, a))
			}
			if strings.ContainsAny(a, "*?") {
				out = append(out, fmt.Sprintf("%s: grants %q, a wildcard", where, a))
			}
			for _, res := range st.Resource {
				granted[grant{strings.ToLower(a), res}] = a
			}
		}
	}
	needed := map[grant]bool{}
	for _, p := range permissions {
		if p.by&r == 0 {
			continue
		}
		g := grant{strings.ToLower(p.action), p.resource}
		needed[g] = true
		if _, ok := granted[g]; !ok {
			out = append(out, fmt.Sprintf("does not allow %s on %s, needed by %s", p.action, p.resource, p.code))
		}
	}
	for g, action := range granted {
		if !needed[g] {
			out = append(out, fmt.Sprintf("allows %s on %s, which no row of permissions needs for the %s", action, g.resource, r))
		}
	}
	slices.Sort(out)
	return out
}

// TestPoliciesGrantExactlyWhatTheCodeNeeds checks each plain policy
// document against the permissions table: every action each role needs is
// allowed on its resource, and nothing else (nothing outside dynamodb:, no
// wildcard action, no other resource).
func TestPoliciesGrantExactlyWhatTheCodeNeeds(t *testing.T) {
	t.Parallel()
	for _, ro := range roles {
		t.Run(ro.name, func(t *testing.T) {
			t.Parallel()
			data, err := readJSON(ro.document)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := decodePolicy(data)
			if err != nil {
				t.Fatalf("%s: %v", ro.document, err)
			}
			for _, p := range policyProblems(doc, ro.role) {
				t.Errorf("%s: %s", ro.document, p)
			}
		})
	}
}

// TestPolicyPlaceholders checks that the plain documents use only the
// placeholders the README documents: CloudFormation's partition, region and
// account, and the parameters of the templates.
func TestPolicyPlaceholders(t *testing.T) {
	t.Parallel()
	tpl, _ := loadTemplate(t, iamTemplate)
	for _, ro := range roles {
		data, err := readJSON(ro.document)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range subVariable.FindAllStringSubmatch(string(data), -1) {
			_, param := tpl.Parameters[m[1]]
			if !param && !slices.Contains([]string{"AWS::Partition", "AWS::Region", "AWS::AccountId"}, m[1]) {
				t.Errorf("%s: placeholder ${%s} is neither a parameter of %s nor AWS::Partition, AWS::Region or AWS::AccountId", ro.document, m[1], iamTemplate)
			}
		}
	}
}

// stripSub replaces each {"Fn::Sub": "text"} under v by "text".
func stripSub(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = stripSub(e)
		}
		return out
	case map[string]any:
		if s, ok := v["Fn::Sub"].(string); ok && len(v) == 1 {
			return s
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = stripSub(e)
		}
		return out
	}
	return v
}

// TestIAMTemplateMatchesDocuments checks that iam.json's managed policies
// are the plain documents, with Fn::Sub around each placeholder, and that
// its parameters are those of tables.json, whose defaults the Go defaults
// are.
func TestIAMTemplateMatchesDocuments(t *testing.T) {
	t.Parallel()
	iam, raw := loadTemplate(t, iamTemplate)
	tables, tablesRaw := loadTemplate(t, tablesTemplate)
	if !reflect.DeepEqual(raw["Parameters"], tablesRaw["Parameters"]) {
		t.Errorf("the parameters of %s and %s differ", iamTemplate, tablesTemplate)
	}
	for name, want := range map[string]string{
		"CommitsTableName":    store.DefaultTableName,
		"IndexName":           store.DefaultIndexName,
		"CheckpointTableName": dynamocheckpoint.DefaultTableName,
	} {
		for path, tpl := range map[string]*template{tablesTemplate: tables, iamTemplate: iam} {
			if got := tpl.Parameters[name].Default; got != want {
				t.Errorf("%s: parameter %s defaults to %q, want %q as in Go", path, name, got, want)
			}
		}
	}
	var policies []string
	for id, r := range iam.Resources {
		if r.Type == "AWS::IAM::ManagedPolicy" {
			policies = append(policies, id)
		}
	}
	slices.Sort(policies)
	var want []string
	for _, ro := range roles {
		want = append(want, ro.policyID)
	}
	if slices.Sort(want); !slices.Equal(policies, want) {
		t.Errorf("managed policies in %s: %q, want %q", iamTemplate, policies, want)
	}
	resources, _ := raw["Resources"].(map[string]any)
	for _, ro := range roles {
		res, _ := resources[ro.policyID].(map[string]any)
		props, _ := res["Properties"].(map[string]any)
		fromTemplate := stripSub(props["PolicyDocument"])
		data, err := readJSON(ro.document)
		if err != nil {
			t.Fatal(err)
		}
		var fromFile any
		if err := json.Unmarshal(data, &fromFile); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromTemplate, fromFile) {
			got, _ := json.MarshalIndent(fromTemplate, "", "  ")
			t.Errorf("%s %s.PolicyDocument, without Fn::Sub, differs from %s:\n%s", iamTemplate, ro.policyID, ro.document, got)
		}
	}
}

// policyFor returns the least policy the permissions table allows r: one
// statement per resource.
func policyFor(r role) policyDocument {
	var doc policyDocument
	doc.Version = "2012-10-17"
	byResource := map[string]int{}
	for _, p := range permissions {
		if p.by&r == 0 {
			continue
		}
		i, ok := byResource[p.resource]
		if !ok {
			i = len(doc.Statement)
			byResource[p.resource] = i
			doc.Statement = append(doc.Statement, statement{Sid: fmt.Sprintf("S%d", i), Effect: "Allow", Resource: stringList{p.resource}})
		}
		if !slices.Contains(doc.Statement[i].Action, p.action) {
			doc.Statement[i].Action = append(doc.Statement[i].Action, p.action)
		}
	}
	return doc
}

// TestPolicyDriftIsDetected changes the least policy of each role one way
// at a time and expects policyProblems to report it: a guard against a
// check that checks nothing. (TestPoliciesGrantExactlyWhatTheCodeNeeds then
// holds the policy files to the same check.)
func TestPolicyDriftIsDetected(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(doc *policyDocument)
	}{
		{"action removed", func(d *policyDocument) { d.Statement[0].Action = d.Statement[0].Action[1:] }},
		{"statement removed", func(d *policyDocument) { d.Statement = d.Statement[1:] }},
		{"other service", func(d *policyDocument) { d.Statement[0].Action = append(d.Statement[0].Action, "s3:GetObject") }},
		{"wildcard action", func(d *policyDocument) { d.Statement[0].Action = stringList{"dynamodb:*"} }},
		{"action not needed", func(d *policyDocument) {
			d.Statement[0].Action = append(d.Statement[0].Action, "dynamodb:BatchWriteItem")
		}},
		{"any resource", func(d *policyDocument) { d.Statement[0].Resource = append(d.Statement[0].Resource, "*") }},
		{"other table", func(d *policyDocument) { d.Statement[0].Resource = stringList{tableARN + "other"} }},
		{"deny", func(d *policyDocument) { d.Statement[0].Effect = "Deny" }},
		{"bad sid", func(d *policyDocument) { d.Statement[0].Sid = "not alphanumeric" }},
		{"version", func(d *policyDocument) { d.Version = "2008-10-17" }},
	}
	for _, ro := range roles {
		if p := policyProblems(policyFor(ro.role), ro.role); len(p) != 0 {
			t.Fatalf("the least %s policy has problems: %q", ro.name, p)
		}
		for _, tc := range cases {
			t.Run(ro.name+"/"+tc.name, func(t *testing.T) {
				doc := policyFor(ro.role)
				tc.change(&doc)
				if p := policyProblems(doc, ro.role); len(p) == 0 {
					t.Errorf("policy changed (%s), no problem reported", tc.name)
				}
			})
		}
	}
}
