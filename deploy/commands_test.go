package deploy_test

import (
	"bytes"
	"cmp"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtable"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// shapeOfDescription reads a table as DynamoDB describes it.
func shapeOfDescription(d *types.TableDescription) tableShape {
	s := tableShape{
		Name:          aws.ToString(d.TableName),
		Keys:          goKeys(d.KeySchema),
		Attributes:    map[string]string{},
		GlobalIndexes: map[string]indexShape{},
		LocalIndexes:  map[string]indexShape{},
		BillingMode:   string(types.BillingModeProvisioned),
	}
	if d.BillingModeSummary != nil && d.BillingModeSummary.BillingMode != "" {
		s.BillingMode = string(d.BillingModeSummary.BillingMode)
	}
	s.Provisioned = s.BillingMode == string(types.BillingModeProvisioned)
	for _, a := range d.AttributeDefinitions {
		s.Attributes[aws.ToString(a.AttributeName)] = string(a.AttributeType)
	}
	for _, ix := range d.GlobalSecondaryIndexes {
		p, nk := goProjection(ix.Projection)
		s.GlobalIndexes[aws.ToString(ix.IndexName)] = indexShape{Keys: goKeys(ix.KeySchema), Projection: p, NonKeyAttributes: nk, Provisioned: s.Provisioned}
	}
	for _, ix := range d.LocalSecondaryIndexes {
		p, nk := goProjection(ix.Projection)
		s.LocalIndexes[aws.ToString(ix.IndexName)] = indexShape{Keys: goKeys(ix.KeySchema), Projection: p, NonKeyAttributes: nk}
	}
	if ss := d.StreamSpecification; ss != nil && aws.ToBool(ss.StreamEnabled) {
		s.StreamViewType = string(ss.StreamViewType)
	}
	return s
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
