package ddbtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestMain(m *testing.M) { Main(m) }

func TestClientCreatesTable(t *testing.T) {
	t.Parallel()
	client := Client(t)
	name := TableName(t)
	_, err := client.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 5*time.Second, func() bool {
		out, err := client.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		return err == nil && out.Table.TableStatus == types.TableStatusActive
	}, "table %s not active", name)
}

var validTableName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)

func TestTableName(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, tc := range []struct{ name, wantPrefix string }{
		{"plain", "TestTableName.plain-"},
		{"with spaces & ünïcode!", "TestTableName.with_spaces___"},
		{"nested/sub", "TestTableName.nested.sub-"},
		{strings.Repeat("x", 300), "TestTableName." + strings.Repeat("x", 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 {
				got := TableName(t)
				if !validTableName.MatchString(got) {
					t.Errorf("TableName = %q (len %d): not a valid DynamoDB table name", got, len(got))
				}
				if !strings.HasPrefix(got, tc.wantPrefix) {
					t.Errorf("TableName = %q, want prefix %q", got, tc.wantPrefix)
				}
				if seen[got] {
					t.Errorf("TableName returned %q twice", got)
				}
				seen[got] = true
			}
		})
	}
}

// fakeTB records Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestEventually(t *testing.T) {
	t.Parallel()
	t.Run("becomes true", func(t *testing.T) {
		var calls atomic.Int32
		fake := &fakeTB{TB: t}
		Eventually(fake, 5*time.Second, func() bool { return calls.Add(1) == 3 }, "never")
		if fake.failed != "" || calls.Load() != 3 {
			t.Fatalf("failed = %q after %d calls", fake.failed, calls.Load())
		}
	})
	t.Run("times out", func(t *testing.T) {
		fake := &fakeTB{TB: t}
		start := time.Now()
		Eventually(fake, 100*time.Millisecond, func() bool { return false }, "waiting for %s", "godot")
		if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
			t.Errorf("gave up after %v, want about 100ms", d)
		}
		if !strings.Contains(fake.failed, "waiting for godot") || !strings.Contains(fake.failed, "100ms") {
			t.Errorf("failure message %q", fake.failed)
		}
	})
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	if ep := Endpoint(t); !strings.HasPrefix(ep, "http") {
		t.Errorf("Endpoint = %q", ep)
	}
}

// TestMainFailsLoudly runs this test binary again without java on PATH: Main
// must exit 1 and say why, not skip.
func TestMainFailsLoudly(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir(), "AWS_ENDPOINT_URL_DYNAMODB=", "EVENTSTORE_CACHE_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("err = %v, want exit status 1; output:\n%s", err, out)
	}
	for _, want := range []string{"ddbtest: cannot start DynamoDB Local", "java not found", "openjdk-17-jre-headless"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not mention %q:\n%s", want, out)
		}
	}
}
