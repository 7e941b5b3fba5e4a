package awscfg

import (
	"errors"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func TestIsLoopback(t *testing.T) {
	for ep, want := range map[string]bool{
		"http://localhost:8000":      true,
		"http://127.0.0.1:8000":      true,
		"http://[::1]:8000":          true,
		"https://dynamodb.aws.com":   false,
		"http://10.0.0.1:8000":       false,
		"":                           false,
		"http://localhost.evil.com/": false,
	} {
		if got := IsLoopback(ep); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", ep, got, want)
		}
	}
}

func TestCheckEndpoint(t *testing.T) {
	for ep, ok := range map[string]bool{
		"":                      true,
		"http://localhost:8000": true,
		"https://h.example":     true,
		"ftp://h":               false,
		"localhost:8000":        false,
		"http://":               false,
	} {
		if err := CheckEndpoint(ep); (err == nil) != ok {
			t.Errorf("CheckEndpoint(%q) = %v", ep, err)
		}
	}
}

func TestClients(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1"}
	local := DynamoDB(cfg, "http://127.0.0.1:8000")
	if o := local.Options(); aws.ToString(o.BaseEndpoint) != "http://127.0.0.1:8000" || !o.DisableValidateResponseChecksum {
		t.Errorf("DynamoDB on a loopback endpoint: %v, checksum off %v", aws.ToString(o.BaseEndpoint), o.DisableValidateResponseChecksum)
	}
	remote := DynamoDB(cfg, "https://dynamodb.example.com")
	if remote.Options().DisableValidateResponseChecksum {
		t.Error("checksums off on a remote endpoint")
	}
	// Streams: the endpoint given; else DynamoDB Local's, which serves
	// both; else the SDK's (none here).
	for _, c := range []struct {
		endpoint string
		ddb      *dynamodb.Client
		want     string
	}{
		{"http://127.0.0.1:8000", local, "http://127.0.0.1:8000"},
		{"", local, "http://127.0.0.1:8000"},
		{"", remote, ""},
		{"", nil, ""},
	} {
		if got := aws.ToString(Streams(cfg, c.endpoint, c.ddb).Options().BaseEndpoint); got != c.want {
			t.Errorf("Streams(%q) endpoint %q, want %q", c.endpoint, got, c.want)
		}
	}
}

func TestLoadNoRegion(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	if _, err := Load(t.Context(), Options{}); !errors.Is(err, ErrNoRegion) {
		t.Errorf("Load without a region = %v, want ErrNoRegion", err)
	}
	cfg, err := Load(t.Context(), Options{Region: "eu-west-1"})
	if err != nil || cfg.Region != "eu-west-1" {
		t.Errorf("Load with a region = %v, %v", cfg.Region, err)
	}
}
