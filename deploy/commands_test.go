package deploy_test

import (
	"bytes"
	"cmp"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtable"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// shapeOfDescription reads a table as DynamoDB describes it, through the
// CreateTableInput that would make it.
func shapeOfDescription(d *types.TableDescription) tableShape {
	def := &dynamodb.CreateTableInput{
		TableName:            d.TableName,
		KeySchema:            d.KeySchema,
		AttributeDefinitions: d.AttributeDefinitions,
		BillingMode:          types.BillingModeProvisioned,
		StreamSpecification:  d.StreamSpecification,
	}
	if d.BillingModeSummary != nil && d.BillingModeSummary.BillingMode != "" {
		def.BillingMode = d.BillingModeSummary.BillingMode
	}
	// A description always has throughput, zero when on demand.
	var pt *types.ProvisionedThroughput
	if def.BillingMode == types.BillingModeProvisioned {
		pt = &types.ProvisionedThroughput{}
	}
	def.ProvisionedThroughput = pt
	for _, ix := range d.GlobalSecondaryIndexes {
		def.GlobalSecondaryIndexes = append(def.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName: ix.IndexName, KeySchema: ix.KeySchema, Projection: ix.Projection, ProvisionedThroughput: pt})
	}
	for _, ix := range d.LocalSecondaryIndexes {
		def.LocalSecondaryIndexes = append(def.LocalSecondaryIndexes, types.LocalSecondaryIndex{
			IndexName: ix.IndexName, KeySchema: ix.KeySchema, Projection: ix.Projection})
	}
	return shapeOfGo(def)
}

// TestCommandsCreateTheTemplateTables runs the commands that create the
// tables on an endpoint (table create, checkpoint create-table) against
// DynamoDB Local and checks that each table they create is the one
// tables.json defines, but for its name: one definition for both.
func TestCommandsCreateTheTemplateTables(t *testing.T) {
	t.Parallel()
	tpl, _ := loadTemplate(t, tablesTemplate)
	client := ddbtest.Client(t)
	base := ddbtest.TableName(t)
	commits, checkpoints := base+"-commits", base+"-cp"
	t.Cleanup(func() {
		_ = store.DeleteTable(context.Background(), client, store.Config{TableName: commits})
		_ = dynamocheckpoint.DeleteTable(context.Background(), client, dynamocheckpoint.Config{TableName: checkpoints})
	})
	conn := []string{"--endpoint", ddbtest.Endpoint(t), "--region", cmp.Or(os.Getenv("AWS_REGION"), "us-east-1")}
	for _, c := range []struct {
		id, table string
		args      []string
	}{
		{"CommitsTable", commits, []string{"table", "create", "--table", commits}},
		{"CheckpointTable", checkpoints, []string{"checkpoint", "create-table", "--checkpoint-table", checkpoints}},
	} {
		t.Run(c.id, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := cli.Run(t.Context(), append(c.args, conn...), nil, &stdout, &stderr, nil); code != 0 {
				t.Fatalf("eventstore %s: exit %d\n%s", strings.Join(c.args, " "), code, stderr.String())
			}
			d, err := ddbtable.Describe(t.Context(), client, c.table)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := shapeOfTemplate(tpl, c.id)
			if err != nil {
				t.Fatal(err)
			}
			got := shapeOfDescription(d)
			got.Name = want.Name // the test's own table
			for _, diff := range want.diff(got) {
				t.Errorf("eventstore %s creates a table that differs from %s %s: %s", strings.Join(c.args[:2], " "), tablesTemplate, c.id, diff)
			}
		})
	}
}
