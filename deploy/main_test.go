package deploy_test

import (
	"os"
	"testing"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

// TestMain starts DynamoDB Local for TestWorkerTemplateRunsTheDaemon, which
// runs the daemon as worker.json configures it.
func TestMain(m *testing.M) {
	// The daemon loads the AWS SDK's configuration from the process
	// environment: give it the static credentials DynamoDB Local takes, and
	// keep it away from the instance metadata service and the developer's
	// profiles. Its own settings come from the template, not from here.
	set := map[string]string{
		"AWS_ACCESS_KEY_ID":           "local",
		"AWS_SECRET_ACCESS_KEY":       "local",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	}
	for k, v := range set {
		_ = os.Setenv(k, v)
	}
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		_ = os.Unsetenv(k)
	}
	ddbtest.Main(m)
}
