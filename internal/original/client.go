package original

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Default names, those the original package's README uses.
const (
	DefaultTableName = "commitsByAggregateIdAndVersion"
	DefaultIndexName = "commitsByCommitId"
)

const (
	stopGrace   = 5 * time.Second // from closing stdin to SIGKILL
	stderrLimit = 64 << 10        // bytes of the driver's stderr kept
)

var (
	// ErrVersionConflict is matched (errors.Is) by the *Error of an append
	// the package rejected with its EventStore.VersionConflictError.
	ErrVersionConflict = errors.New("original: version conflict")
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("original: client closed")
	// ErrDriverExited is returned (wrapped, with the driver's stderr) by calls
	// made after the node process ended by itself, and by calls it did not
	// answer.
	ErrDriverExited = errors.New("original: driver process exited")
)

// Error is an error the original package, or the aws-sdk under it, threw.
type Error struct {
	// Op is the request: "append", "query", "scan", "createTable" or
	// "appendMany".
	Op string
	// Name is the thrown error's name (or AWS error code), e.g.
	// "EventStoreVersionConflictError" or "ResourceNotFoundException".
	Name string
	// Message is the thrown error's message.
	Message string
	// VersionConflict reports that the error is an instance of the
	// package's EventStore.VersionConflictError.
	VersionConflict bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("original: %s: %s: %s", e.Op, e.Name, e.Message)
}

// Is reports whether target is ErrVersionConflict and the error is the
// package's version conflict.
func (e *Error) Is(target error) bool { return target == ErrVersionConflict && e.VersionConflict }

// Options configures [Start].
type Options struct {
	// Endpoint is the DynamoDB endpoint the package talks to, e.g.
	// "http://127.0.0.1:8000". Required. The credentials are always
	// "local"/"local" and the region us-east-1, so it is meant for DynamoDB
	// Local.
	Endpoint string
	// TableName is the commits table. Default DefaultTableName.
	TableName string
	// IndexName is the commit-order index. Default DefaultIndexName.
	IndexName string
	// CacheDir is the folder the package is installed into (into
	// CacheDir/dynamodb-event-store-2.2.0/). Default: $EVENTSTORE_CACHE_DIR,
	// else os.UserCacheDir()/eventstore (~/.cache/eventstore on Linux).
	CacheDir string
}

// Info describes the running driver.
type Info struct {
	// Package, AWSSDK and Node are the versions of dynamodb-event-store,
	// of the aws-sdk it loaded, and of node.
	Package, AWSSDK, Node string
	// Dir is the folder the package is installed in.
	Dir string
}

// Client is one running driver: one node process with one EventStore of the
// original package. Its methods are safe for concurrent use; the driver
// handles requests one at a time, in the order they were sent.
type Client struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *boundedBuffer
	info   Info

	writeMu sync.Mutex // one request line at a time

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan response
	closed  bool

	exited  chan struct{} // closed once the process has been waited for
	exitErr error         // set before exited is closed

	closeOnce sync.Once
	closeErr  error
}

type response struct {
	ID              int64           `json:"id"`
	OK              bool            `json:"ok"`
	Result          json.RawMessage `json:"result"`
	Error           string          `json:"error"`
	Name            string          `json:"name"`
	VersionConflict bool            `json:"versionConflict"`
}

// Start installs the package if it is not in the cache yet (see [Install]),
// writes the driver script next to it and starts `node driver.js`, then waits
// until the driver has loaded the package. ctx bounds the install and that
// wait; the process outlives ctx. Call [Client.Close] when done; should the
// calling process die first, the driver exits when its stdin closes.
//
// Errors: an empty Options.Endpoint; [ErrNodeNotFound] or [ErrNpmNotFound]
// (wrapped) when a tool is missing; a failed install, with npm's stderr; a
// driver that exits before it is ready, with its stderr.
func Start(ctx context.Context, opts Options) (*Client, error) {
	if opts.Endpoint == "" {
		return nil, errors.New("original: Options.Endpoint is required")
	}
	if opts.TableName == "" {
		opts.TableName = DefaultTableName
	}
	if opts.IndexName == "" {
		opts.IndexName = DefaultIndexName
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w: the original package is JavaScript; install Node.js (https://nodejs.org) or `apt-get install nodejs`", ErrNodeNotFound)
	}
	dir, err := Install(ctx, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	config, err := json.Marshal(map[string]string{
		"endpoint":  opts.Endpoint,
		"tableName": opts.TableName,
		"indexName": opts.IndexName,
	})
	if err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	cmd := exec.Command(node, filepath.Join(dir, driverName), string(config))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	c := &Client{
		cmd:     cmd,
		stdin:   stdin,
		stderr:  &boundedBuffer{max: stderrLimit},
		pending: make(map[int64]chan response),
		exited:  make(chan struct{}),
		nextID:  1,
	}
	cmd.Stderr = c.stderr
	ready := make(chan response, 1)
	c.pending[0] = ready
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("original: start node: %w", err)
	}
	go c.read(stdout)

	select {
	case r := <-ready:
		var v struct {
			Package string `json:"package"`
			AWSSDK  string `json:"awsSdk"`
			Node    string `json:"node"`
		}
		if !r.OK || json.Unmarshal(r.Result, &v) != nil {
			c.kill()
			return nil, fmt.Errorf("original: driver did not start: %s %s; its stderr:\n%s", r.Name, r.Error, indent(c.stderr.String()))
		}
		c.info = Info{Package: v.Package, AWSSDK: v.AWSSDK, Node: v.Node, Dir: dir}
		return c, nil
	case <-c.exited:
		return nil, c.exitError()
	case <-ctx.Done():
		c.kill()
		return nil, fmt.Errorf("original: waiting for the driver to start: %w", context.Cause(ctx))
	}
}

// read dispatches response lines to the calls waiting for them until the
// driver's stdout ends, then waits for the process and fails every call
// still waiting.
func (c *Client) read(stdout io.Reader) {
	r := bufio.NewReaderSize(stdout, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var resp response
			if jerr := json.Unmarshal(line, &resp); jerr != nil {
				c.stderr.Write([]byte("original: unreadable driver output: " + string(line)))
			} else {
				c.mu.Lock()
				ch, ok := c.pending[resp.ID]
				delete(c.pending, resp.ID)
				c.mu.Unlock()
				if ok {
					ch <- resp
				}
			}
		}
		if err != nil {
			break
		}
	}
	c.exitErr = c.cmd.Wait()
	close(c.exited)
}

func (c *Client) exitError() error {
	return fmt.Errorf("%w (%v); its stderr:\n%s", ErrDriverExited, c.exitErr, indent(c.stderr.String()))
}

// call sends one request and waits for its response. When ctx ends first it
// returns ctx's error at once; the driver still completes the request (it
// cannot be cancelled) before it handles the next one.
func (c *Client) call(ctx context.Context, op string, req map[string]any) (json.RawMessage, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	select {
	case <-c.exited:
		c.mu.Unlock()
		return nil, c.exitError()
	default:
	}
	id := c.nextID
	c.nextID++
	ch := make(chan response, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	req["id"], req["op"] = id, op
	line, err := json.Marshal(req)
	if err != nil {
		forget()
		return nil, fmt.Errorf("original: %s: encode request: %w", op, err)
	}
	c.writeMu.Lock()
	_, err = c.stdin.Write(append(line, '\n'))
	c.writeMu.Unlock()
	if err != nil {
		forget()
		select {
		case <-c.exited:
			return nil, c.exitError()
		default:
			return nil, fmt.Errorf("original: %s: write request: %w", op, err)
		}
	}

	select {
	case r := <-ch:
		if !r.OK {
			return nil, &Error{Op: op, Name: r.Name, Message: r.Error, VersionConflict: r.VersionConflict}
		}
		return r.Result, nil
	case <-c.exited:
		select {
		case r := <-ch: // answered just before the end
			if !r.OK {
				return nil, &Error{Op: op, Name: r.Name, Message: r.Error, VersionConflict: r.VersionConflict}
			}
			return r.Result, nil
		default:
		}
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		return nil, c.exitError()
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("original: %s: %w", op, context.Cause(ctx))
	}
}

// Info returns the versions the driver runs and the install folder.
func (c *Client) Info() Info { return c.info }

// Append appends one commit with the package's append: version must be free
// for the aggregate. events is any JSON value (the package stores
// JSON.stringify of it); it must be valid JSON.
//
// It returns an *Error matching ErrVersionConflict when the package threw its
// VersionConflictError, another *Error for any other error it threw, and
// ErrClosed or ErrDriverExited when the driver is gone.
func (c *Client) Append(ctx context.Context, aggregateID string, version int64, events json.RawMessage) error {
	_, err := c.call(ctx, "append", map[string]any{"commit": Commit{AggregateID: aggregateID, Version: version, Events: events}})
	return err
}

// Query returns the package's query({aggregateId, version}): the commits of
// one aggregate from version on, as far as the first page of DynamoDB's
// answer goes (the package reads one page only). Each commit is the JSON of
// the object the package returned, re-encoded by JSON.stringify:
// {"commitId","committedAt","aggregateId","version","events"}. Errors as
// for Append.
func (c *Client) Query(ctx context.Context, aggregateID string, version int64) ([]json.RawMessage, error) {
	return c.commits(c.call(ctx, "query", map[string]any{"aggregateId": aggregateID, "version": version}))
}

// Scan returns the package's scan({commitId}): every commit whose commitId is
// commitID or later, in index order, as far as the first page goes. An empty
// commitID scans from the start (the package's scan() without options).
// Commits and errors as for Query.
func (c *Client) Scan(ctx context.Context, commitID string) ([]json.RawMessage, error) {
	req := map[string]any{}
	if commitID != "" {
		req["commitId"] = commitID
	}
	return c.commits(c.call(ctx, "scan", req))
}

func (c *Client) commits(raw json.RawMessage, err error) ([]json.RawMessage, error) {
	if err != nil {
		return nil, err
	}
	var out []json.RawMessage
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("original: decode driver result: %w", err)
	}
	return out, nil
}

// CreateTable runs the package's createTable: the table and its index,
// provisioned with 15 read and 15 write units each, without a stream. It
// returns when DynamoDB accepted the request; the package does not wait for
// the table to become ACTIVE (DynamoDB Local creates it ACTIVE). An existing
// table returns an *Error named ResourceInUseException.
func (c *Client) CreateTable(ctx context.Context) error {
	_, err := c.call(ctx, "createTable", map[string]any{})
	return err
}

// Commit is one commit to append with AppendMany.
type Commit struct {
	AggregateID string          `json:"aggregateId"`
	Version     int64           `json:"version"`
	Events      json.RawMessage `json:"events"`
}

// AppendManyResult reports an AppendMany run.
type AppendManyResult struct {
	// Count is the number of commits appended.
	Count int
	// Elapsed is the time from the first append started to the last one
	// settled, measured inside node.
	Elapsed time.Duration
}

// AppendMany appends commits through the package's append, with up to
// concurrency appends in flight at once (below 1 means 1), taking commits in
// the order given. It is meant for benchmarks: the time is measured in the
// driver, without the JSON-lines round trip. After the first failed append
// it starts no more and returns that failure as for Append, its message
// saying how many appends succeeded.
func (c *Client) AppendMany(ctx context.Context, commits []Commit, concurrency int) (AppendManyResult, error) {
	raw, err := c.call(ctx, "appendMany", map[string]any{"commits": commits, "concurrency": max(concurrency, 1)})
	if err != nil {
		return AppendManyResult{}, err
	}
	var res struct {
		Count     int     `json:"count"`
		ElapsedMs float64 `json:"elapsedMs"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return AppendManyResult{}, fmt.Errorf("original: decode driver result: %w", err)
	}
	return AppendManyResult{Count: res.Count, Elapsed: time.Duration(res.ElapsedMs * float64(time.Millisecond))}, nil
}

// Close ends the driver: it closes the driver's stdin, so that the driver
// finishes the request in hand and exits, and kills it if it has not exited
// within 5 s. Calls waiting for an answer then return ErrClosed. Close is
// idempotent: later calls return the first call's result, which is an error,
// with the driver's stderr, only if the driver did not exit cleanly.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		_ = c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(stopGrace):
			c.kill()
			c.closeErr = fmt.Errorf("original: driver did not exit within %v of closing its stdin; killed", stopGrace)
			return
		}
		if c.exitErr != nil {
			c.closeErr = c.exitError()
		}
	})
	return c.closeErr
}

// kill kills the process Start started and waits until it is reaped.
func (c *Client) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// boundedBuffer keeps the last max bytes written to it. It is safe for
// concurrent use.
type boundedBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
