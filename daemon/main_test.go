package daemon_test

import (
	"os"
	"testing"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

func TestMain(m *testing.M) {
	// Run loads the SDK's default configuration from the process
	// environment: give it the static credentials DynamoDB Local takes, a
	// region, and keep it away from the instance metadata service, the
	// developer's profiles and any EVENTSTORE_ setting.
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
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		_ = os.Unsetenv(k)
	}
	ddbtest.Main(m)
}
