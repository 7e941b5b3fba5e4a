package deploy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// templateTables pairs each table of tables.json (by logical id) with its
// one definition in Go, with default names and options, which the template
// parameters' defaults must match.
var templateTables = []struct {
	id  string
	def func() *dynamodb.CreateTableInput
}{
	{"CommitsTable", func() *dynamodb.CreateTableInput {
		return store.TableDefinition(store.Config{}, store.TableOptions{})
	}},
	{"CheckpointTable", func() *dynamodb.CreateTableInput {
		return dynamocheckpoint.TableDefinition(dynamocheckpoint.Config{}, dynamocheckpoint.TableOptions{})
	}},
}

// tableShape is what a table definition says about a table's layout, in a
// form both a CreateTableInput and a CloudFormation table turn into.
type tableShape struct {
	Name string
	// Keys are "name KEYTYPE", in order.
	Keys []string
	// Attributes maps each attribute definition's name to its type.
	Attributes    map[string]string
	GlobalIndexes map[string]indexShape
	LocalIndexes  map[string]indexShape
	// BillingMode is PROVISIONED when the definition leaves it out, as
	// DynamoDB and CloudFormation do.
	BillingMode string
	Provisioned bool
	// StreamViewType is "" without a stream.
	StreamViewType string
}

type indexShape struct {
	Keys             []string
	Projection       string
	NonKeyAttributes []string
	Provisioned      bool
}

// diff lists, field by field, how the template's shape differs from Go's.
func (tpl tableShape) diff(goDef tableShape) []string {
	var out []string
	field := func(name string, t, g any) {
		if !reflect.DeepEqual(t, g) {
			out = append(out, fmt.Sprintf("%s: template has %v, Go has %v", name, t, g))
		}
	}
	field("table name", tpl.Name, goDef.Name)
	field("key schema", tpl.Keys, goDef.Keys)
	field("attribute definitions", tpl.Attributes, goDef.Attributes)
	field("billing mode", tpl.BillingMode, goDef.BillingMode)
	field("provisioned throughput", tpl.Provisioned, goDef.Provisioned)
	field("stream view type", tpl.StreamViewType, goDef.StreamViewType)
	indexes := func(kind string, t, g map[string]indexShape) {
		field(kind+" names", slices.Sorted(maps.Keys(t)), slices.Sorted(maps.Keys(g)))
		for name, ti := range t {
			gi, ok := g[name]
			if !ok {
				continue
			}
			field(kind+" "+name+" key schema", ti.Keys, gi.Keys)
			field(kind+" "+name+" projection", ti.Projection, gi.Projection)
			field(kind+" "+name+" non-key attributes", ti.NonKeyAttributes, gi.NonKeyAttributes)
			field(kind+" "+name+" provisioned throughput", ti.Provisioned, gi.Provisioned)
		}
	}
	indexes("global secondary index", tpl.GlobalIndexes, goDef.GlobalIndexes)
	indexes("local secondary index", tpl.LocalIndexes, goDef.LocalIndexes)
	return out
}

func goKeys(ks []types.KeySchemaElement) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
	}
	return out
}

func goProjection(p *types.Projection) (string, []string) {
	if p == nil {
		return "", []string{}
	}
	return string(p.ProjectionType), slices.Sorted(slices.Values(append([]string{}, p.NonKeyAttributes...)))
}

// shapeOfGo reads a CreateTableInput.
func shapeOfGo(def *dynamodb.CreateTableInput) tableShape {
	s := tableShape{
		Name:          aws.ToString(def.TableName),
		Keys:          goKeys(def.KeySchema),
		Attributes:    map[string]string{},
		GlobalIndexes: map[string]indexShape{},
		LocalIndexes:  map[string]indexShape{},
		BillingMode:   string(def.BillingMode),
		Provisioned:   def.ProvisionedThroughput != nil,
	}
	if s.BillingMode == "" {
		s.BillingMode = string(types.BillingModeProvisioned)
	}
	for _, a := range def.AttributeDefinitions {
		s.Attributes[aws.ToString(a.AttributeName)] = string(a.AttributeType)
	}
	for _, ix := range def.GlobalSecondaryIndexes {
		p, nk := goProjection(ix.Projection)
		s.GlobalIndexes[aws.ToString(ix.IndexName)] = indexShape{Keys: goKeys(ix.KeySchema), Projection: p, NonKeyAttributes: nk, Provisioned: ix.ProvisionedThroughput != nil}
	}
	for _, ix := range def.LocalSecondaryIndexes {
		p, nk := goProjection(ix.Projection)
		s.LocalIndexes[aws.ToString(ix.IndexName)] = indexShape{Keys: goKeys(ix.KeySchema), Projection: p, NonKeyAttributes: nk}
	}
	if ss := def.StreamSpecification; ss != nil && aws.ToBool(ss.StreamEnabled) {
		s.StreamViewType = string(ss.StreamViewType)
	}
	return s
}

// cfnTable is the part of an AWS::DynamoDB::Table's properties the tests
// read.
type cfnTable struct {
	TableName              any
	AttributeDefinitions   []struct{ AttributeName, AttributeType string }
	KeySchema              []cfnKey
	GlobalSecondaryIndexes []cfnIndex
	LocalSecondaryIndexes  []cfnIndex
	BillingMode            string
	ProvisionedThroughput  any
	StreamSpecification    *struct {
		StreamViewType string
	}
	PointInTimeRecoverySpecification *struct {
		PointInTimeRecoveryEnabled bool
	}
	DeletionProtectionEnabled bool
}

type cfnKey struct{ AttributeName, KeyType string }

type cfnIndex struct {
	IndexName  any
	KeySchema  []cfnKey
	Projection *struct {
		ProjectionType   string
		NonKeyAttributes []string
	}
	ProvisionedThroughput any
}

func cfnKeys(ks []cfnKey) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, k.AttributeName+" "+k.KeyType)
	}
	return out
}

// resolve returns a literal string, or the default of the parameter a
// {"Ref": name} names.
func (tpl *template) resolve(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case map[string]any:
		if name, ok := v["Ref"].(string); ok && len(v) == 1 {
			p, ok := tpl.Parameters[name]
			if !ok || p.Default == "" {
				return "", fmt.Errorf("Ref %q: no parameter of that name with a default", name)
			}
			return p.Default, nil
		}
	}
	return "", fmt.Errorf("%v: want a string or a Ref to a parameter", v)
}

// shapeOfTemplate reads an AWS::DynamoDB::Table, with parameters at their
// defaults.
func shapeOfTemplate(tpl *template, id string) (tableShape, cfnTable, error) {
	r, ok := tpl.Resources[id]
	if !ok || r.Type != "AWS::DynamoDB::Table" {
		return tableShape{}, cfnTable{}, fmt.Errorf("no AWS::DynamoDB::Table %s", id)
	}
	var t cfnTable
	if err := json.Unmarshal(r.Properties, &t); err != nil {
		return tableShape{}, cfnTable{}, fmt.Errorf("%s: %w", id, err)
	}
	name, err := tpl.resolve(t.TableName)
	if err != nil {
		return tableShape{}, t, fmt.Errorf("%s: TableName: %w", id, err)
	}
	s := tableShape{
		Name:          name,
		Keys:          cfnKeys(t.KeySchema),
		Attributes:    map[string]string{},
		GlobalIndexes: map[string]indexShape{},
		LocalIndexes:  map[string]indexShape{},
		BillingMode:   t.BillingMode,
		Provisioned:   t.ProvisionedThroughput != nil,
	}
	if s.BillingMode == "" {
		s.BillingMode = string(types.BillingModeProvisioned)
	}
	for _, a := range t.AttributeDefinitions {
		if _, dup := s.Attributes[a.AttributeName]; dup {
			return s, t, fmt.Errorf("%s: attribute %s defined twice", id, a.AttributeName)
		}
		s.Attributes[a.AttributeName] = a.AttributeType
	}
	indexes := func(kind string, in []cfnIndex, into map[string]indexShape) error {
		for _, ix := range in {
			name, err := tpl.resolve(ix.IndexName)
			if err != nil {
				return fmt.Errorf("%s: %s IndexName: %w", id, kind, err)
			}
			if _, dup := into[name]; dup {
				return fmt.Errorf("%s: %s %s defined twice", id, kind, name)
			}
			is := indexShape{Keys: cfnKeys(ix.KeySchema), NonKeyAttributes: []string{}, Provisioned: ix.ProvisionedThroughput != nil}
			if ix.Projection != nil {
				is.Projection = ix.Projection.ProjectionType
				is.NonKeyAttributes = slices.Sorted(slices.Values(append([]string{}, ix.Projection.NonKeyAttributes...)))
			}
			into[name] = is
		}
		return nil
	}
	if err := indexes("global secondary index", t.GlobalSecondaryIndexes, s.GlobalIndexes); err != nil {
		return s, t, err
	}
	if err := indexes("local secondary index", t.LocalSecondaryIndexes, s.LocalIndexes); err != nil {
		return s, t, err
	}
	if t.StreamSpecification != nil {
		s.StreamViewType = t.StreamSpecification.StreamViewType
	}
	return s, t, nil
}

// TestTablesMatchGoDefinitions checks that tables.json creates exactly the
// tables the Go code defines: names (as parameter defaults), key schemas,
// attribute definitions, indexes with their keys and projections, billing
// mode and stream view type.
func TestTablesMatchGoDefinitions(t *testing.T) {
	t.Parallel()
	tpl, _ := loadTemplate(t, tablesTemplate)
	var ids []string
	for id, r := range tpl.Resources {
		if r.Type == "AWS::DynamoDB::Table" {
			ids = append(ids, id)
		}
	}
	var want []string
	for _, tt := range templateTables {
		want = append(want, tt.id)
	}
	if slices.Sort(ids); !slices.Equal(ids, slices.Sorted(slices.Values(want))) {
		t.Errorf("tables in %s: %q, want %q", tablesTemplate, ids, slices.Sorted(slices.Values(want)))
	}
	for _, tt := range templateTables {
		t.Run(tt.id, func(t *testing.T) {
			got, _, err := shapeOfTemplate(tpl, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range got.diff(shapeOfGo(tt.def())) {
				t.Errorf("%s %s: %s", tablesTemplate, tt.id, d)
			}
		})
	}
}

// TestTablesAreRetained checks what keeps the data when the stack or a
// table goes: DeletionPolicy and UpdateReplacePolicy Retain, point-in-time
// recovery, deletion protection.
func TestTablesAreRetained(t *testing.T) {
	t.Parallel()
	tpl, _ := loadTemplate(t, tablesTemplate)
	for _, tt := range templateTables {
		r := tpl.Resources[tt.id]
		_, props, err := shapeOfTemplate(tpl, tt.id)
		if err != nil {
			t.Error(err)
			continue
		}
		if r.DeletionPolicy != "Retain" || r.UpdateReplacePolicy != "Retain" {
			t.Errorf("%s: DeletionPolicy %q, UpdateReplacePolicy %q, want both Retain", tt.id, r.DeletionPolicy, r.UpdateReplacePolicy)
		}
		if p := props.PointInTimeRecoverySpecification; p == nil || !p.PointInTimeRecoveryEnabled {
			t.Errorf("%s: point-in-time recovery is not enabled", tt.id)
		}
		if !props.DeletionProtectionEnabled {
			t.Errorf("%s: deletion protection is not enabled", tt.id)
		}
	}
}

// TestTablesOutputs checks that the stack gives what other stacks and the
// policies need: both tables' ARNs and the commits table's stream ARN.
func TestTablesOutputs(t *testing.T) {
	t.Parallel()
	tpl, _ := loadTemplate(t, tablesTemplate)
	have := map[string]bool{}
	for _, o := range tpl.Outputs {
		m, ok := o.Value.(map[string]any)
		if !ok {
			continue
		}
		if ga, ok := m["Fn::GetAtt"].([]any); ok && len(ga) == 2 {
			have[fmt.Sprint(ga[0], ".", ga[1])] = true
		}
	}
	for _, want := range []string{"CommitsTable.Arn", "CommitsTable.StreamArn", "CheckpointTable.Arn"} {
		if !have[want] {
			t.Errorf("%s has no output of Fn::GetAtt %s", tablesTemplate, want)
		}
	}
}

// TestTableDriftIsDetected changes one thing at a time in the commits
// table's Go definition and expects the comparison to report it: a guard
// against a comparison that misses a field. (TestTablesMatchGoDefinitions
// then makes the template agree on every field this catches.)
func TestTableDriftIsDetected(t *testing.T) {
	t.Parallel()
	commits := func() *dynamodb.CreateTableInput { return store.TableDefinition(store.Config{}, store.TableOptions{}) }
	cases := []struct {
		name   string
		change func(def *dynamodb.CreateTableInput)
	}{
		{"table name", func(d *dynamodb.CreateTableInput) { d.TableName = aws.String("other") }},
		{"key type", func(d *dynamodb.CreateTableInput) { d.KeySchema[1].KeyType = types.KeyTypeHash }},
		{"key order", func(d *dynamodb.CreateTableInput) { slices.Reverse(d.KeySchema) }},
		{"attribute type", func(d *dynamodb.CreateTableInput) {
			d.AttributeDefinitions[1].AttributeType = types.ScalarAttributeTypeS
		}},
		{"extra attribute", func(d *dynamodb.CreateTableInput) {
			d.AttributeDefinitions = append(d.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String("x"), AttributeType: types.ScalarAttributeTypeS})
		}},
		{"index name", func(d *dynamodb.CreateTableInput) { d.GlobalSecondaryIndexes[0].IndexName = aws.String("other") }},
		{"index key", func(d *dynamodb.CreateTableInput) {
			d.GlobalSecondaryIndexes[0].KeySchema[1].AttributeName = aws.String("committedAt")
		}},
		{"index projection", func(d *dynamodb.CreateTableInput) {
			d.GlobalSecondaryIndexes[0].Projection.ProjectionType = types.ProjectionTypeKeysOnly
		}},
		{"index non-key attributes", func(d *dynamodb.CreateTableInput) {
			d.GlobalSecondaryIndexes[0].Projection.NonKeyAttributes = []string{"events"}
		}},
		{"no index", func(d *dynamodb.CreateTableInput) { d.GlobalSecondaryIndexes = nil }},
		{"local index", func(d *dynamodb.CreateTableInput) {
			d.LocalSecondaryIndexes = []types.LocalSecondaryIndex{{IndexName: aws.String("l"), KeySchema: d.KeySchema}}
		}},
		{"provisioned", func(d *dynamodb.CreateTableInput) {
			*d = *store.TableDefinition(store.Config{}, store.TableOptions{ReadCapacity: 1, WriteCapacity: 1})
		}},
		{"billing mode left out", func(d *dynamodb.CreateTableInput) { d.BillingMode = "" }},
		{"no stream", func(d *dynamodb.CreateTableInput) {
			*d = *store.TableDefinition(store.Config{}, store.TableOptions{NoStream: true})
		}},
		{"stream disabled", func(d *dynamodb.CreateTableInput) { d.StreamSpecification.StreamEnabled = aws.Bool(false) }},
		{"stream view type", func(d *dynamodb.CreateTableInput) {
			d.StreamSpecification.StreamViewType = types.StreamViewTypeNewAndOldImages
		}},
	}
	base := shapeOfGo(commits())
	if d := base.diff(shapeOfGo(commits())); len(d) != 0 {
		t.Fatalf("a definition differs from itself: %q", d)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			def := commits()
			tc.change(def)
			if d := base.diff(shapeOfGo(def)); len(d) == 0 {
				t.Errorf("Go definition changed (%s), no difference reported", tc.name)
			}
		})
	}
}
