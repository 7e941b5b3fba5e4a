package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// request is what a test server received.
type request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

// answer is what a test server replies.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

// recorder is a test endpoint that records each request and replies with a
// fixed answer.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []request
	ans  answer
}

func newRecorder(t *testing.T, ans answer) *recorder {
	t.Helper()
	rec := &recorder{ans: ans}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server: read body: %v", err)
		}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		a := rec.ans
		rec.mu.Unlock()
		for k, vs := range a.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(a.Status)
		_, _ = io.WriteString(w, a.Body)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

func (r *recorder) only(t *testing.T) request {
	t.Helper()
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// hangingServer accepts requests and does not answer until the client
// gives up, the test ends, or (so that a client that never gives up fails
// the test rather than hanging it) 10 s pass, when it answers 200.
// arrived receives one value per request.
func hangingServer(t *testing.T) (srv *httptest.Server, arrived chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	arrived = make(chan struct{}, 16)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, arrived
}

func newHandler(t *testing.T, cfg webhook.Config) *webhook.Handler {
	t.Helper()
	h, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func commit(agg string, v int64) store.Commit {
	at := time.Date(2024, 1, 2, 3, 4, 5, 6e6, time.UTC).UnixMilli() + v
	return store.Commit{
		CommitID:    store.FormatCommitID(at, agg),
		CommittedAt: at,
		AggregateID: agg,
		Version:     v,
		Events:      json.RawMessage(fmt.Sprintf(`[{"type":"MoneyDeposited","amount":%d,"note":"a<b & c"},"x"]`, 10+v)),
	}
}

func TestHandleSendsCommitAndHeaders(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusOK})
	secret := []byte("s3cret-key")
	h := newHandler(t, webhook.Config{
		URL:          rec.srv.URL + "/hooks/commits?tenant=7",
		Secret:       secret,
		Header:       http.Header{"Authorization": {"Bearer tok-123"}, "x-extra": {"a", "b"}},
		Subscription: "projector",
	})
	c := commit("account-1", 3)
	if err := h.Handle(context.Background(), c); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	r := rec.only(t)

	want, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Body, want) {
		t.Errorf("body\n got %s\nwant %s", r.Body, want)
	}
	// The documented shape: exactly these members, events as a JSON array.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v", err)
	}
	if len(m) != 5 {
		t.Errorf("body members %v, want commitId, committedAt, aggregateId, version, events", m)
	}
	for k, v := range map[string]string{
		"commitId":    `"` + c.CommitID + `"`,
		"committedAt": fmt.Sprint(c.CommittedAt),
		"aggregateId": `"account-1"`,
		"version":     "3",
	} {
		if string(m[k]) != v {
			t.Errorf("body %s = %s, want %s", k, m[k], v)
		}
	}
	var events []any
	if err := json.Unmarshal(m["events"], &events); err != nil || len(events) != 2 {
		t.Errorf("events %s: not the commit's array of 2 (%v)", m["events"], err)
	}
	var back store.Commit
	if err := json.Unmarshal(r.Body, &back); err != nil || back.AggregateID != c.AggregateID ||
		back.Version != c.Version || back.CommitID != c.CommitID || back.CommittedAt != c.CommittedAt {
		t.Errorf("body decodes to %+v (%v), want %+v", back, err, c)
	}

	if r.Method != http.MethodPost || r.Path != "/hooks/commits" || r.Query != "tenant=7" {
		t.Errorf("request %s %s?%s, want POST /hooks/commits?tenant=7", r.Method, r.Path, r.Query)
	}
	for k, v := range map[string]string{
		"Content-Type":             "application/json",
		webhook.DeliveryHeader:     "account-1/3",
		webhook.SubscriptionHeader: "projector",
		"Authorization":            "Bearer tok-123",
		"User-Agent":               "eventstore-webhook",
	} {
		if got := r.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if got := r.Header.Values("X-Extra"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("header X-Extra = %q, want [a b]", got)
	}
	if err := webhook.Verify(secret, r.Body, r.Header); err != nil {
		t.Errorf("Verify of the request: %v", err)
	}
}

func TestHandleBatchSendsCommits(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusNoContent})
	secret := []byte("batch-secret")
	h := newHandler(t, webhook.Config{URL: rec.srv.URL, Secret: secret})
	cs := []store.Commit{commit("account-1", 3), commit("account-1", 4), commit("account-1", 5)}
	if err := h.HandleBatch(context.Background(), cs); err != nil {
		t.Fatalf("HandleBatch: %v", err)
	}
	r := rec.only(t)
	parts := make([]string, len(cs))
	for i, c := range cs {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		parts[i] = string(b)
	}
	want := `{"commits":[` + strings.Join(parts, ",") + `]}`
	if string(r.Body) != want {
		t.Errorf("body\n got %s\nwant %s", r.Body, want)
	}
	var b webhook.Batch
	if err := json.Unmarshal(r.Body, &b); err != nil || len(b.Commits) != 3 || b.Commits[2].Version != 5 {
		t.Errorf("body decodes to %+v (%v)", b, err)
	}
	if got := r.Header.Get(webhook.DeliveryHeader); got != "account-1/3-5" {
		t.Errorf("delivery %q, want account-1/3-5", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	if err := webhook.Verify(secret, r.Body, r.Header); err != nil {
		t.Errorf("Verify of the batch: %v", err)
	}

	// A batch of one keeps the batch form.
	if err := h.HandleBatch(context.Background(), cs[:1]); err != nil {
		t.Fatalf("HandleBatch of one: %v", err)
	}
	reqs := rec.requests()
	if got := reqs[len(reqs)-1]; got.Header.Get(webhook.DeliveryHeader) != "account-1/3-3" || !bytes.HasPrefix(got.Body, []byte(`{"commits":[{`)) {
		t.Errorf("batch of one: delivery %q, body %s", got.Header.Get(webhook.DeliveryHeader), got.Body)
	}

	// No commits, no request.
	if err := h.HandleBatch(context.Background(), nil); err != nil {
		t.Errorf("HandleBatch(nil) = %v", err)
	}
	if n := len(rec.requests()); n != 2 {
		t.Errorf("server got %d requests, want 2", n)
	}
}

func TestBatchFailureIsPlainError(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusInternalServerError})
	h := newHandler(t, webhook.Config{URL: rec.srv.URL})
	err := h.HandleBatch(context.Background(), []store.Commit{commit("a", 0), commit("a", 1)})
	var be *subscribe.BatchError
	if err == nil || errors.As(err, &be) {
		t.Fatalf("HandleBatch = %v, want a plain error (a failure of the first commit)", err)
	}
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 {
		t.Errorf("HandleBatch = %v, want a *StatusError 500", err)
	}
}

func TestOptionalHeadersOmitted(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusOK})
	h := newHandler(t, webhook.Config{URL: rec.srv.URL, Header: http.Header{"User-Agent": {"my-agent/2"}}})
	if err := h.Handle(context.Background(), commit("a", 0)); err != nil {
		t.Fatal(err)
	}
	r := rec.only(t)
	for _, k := range []string{webhook.StandardSignatureHeader, webhook.SignatureHeader, webhook.SubscriptionHeader} {
		if vs, ok := r.Header[k]; ok {
			t.Errorf("header %s = %q, want none", k, vs)
		}
	}
	if got := r.Header.Get("User-Agent"); got != "my-agent/2" {
		t.Errorf("User-Agent %q, want Config.Header's", got)
	}
}

func TestDeliveryEscapesAggregateID(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusOK})
	h := newHandler(t, webhook.Config{URL: rec.srv.URL})
	agg := "shop/order 7é\n"
	if err := h.Handle(context.Background(), commit(agg, 2)); err != nil {
		t.Fatalf("Handle with an aggregate id that is no header value: %v", err)
	}
	got := rec.only(t).Header.Get(webhook.DeliveryHeader)
	if want := url.PathEscape(agg) + "/2"; got != want {
		t.Errorf("delivery %q, want %q", got, want)
	}
	if strings.Count(got, "/") != 1 {
		t.Errorf("delivery %q: the aggregate's slash is not escaped", got)
	}
}

func TestLegacySignKnownVector(t *testing.T) {
	// RFC 4231, test case 2.
	got := webhook.LegacySign([]byte("Jefe"), []byte("what do ya want for nothing?"))
	if want := "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestVerifyLegacy(t *testing.T) {
	secret, body := []byte("secret"), []byte(`{"commits":[]}`)
	sig := webhook.LegacySign(secret, body)
	hexPart := strings.TrimPrefix(sig, "sha256=")
	cases := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		ok     bool
	}{
		{"valid", secret, body, sig, true},
		{"upper-case hex", secret, body, "sha256=" + strings.ToUpper(hexPart), true},
		{"tampered body", secret, []byte(`{"commits":[{}]}`), sig, false},
		{"wrong secret", []byte("secreT"), body, sig, false},
		{"missing header", secret, body, "", false},
		{"no prefix", secret, body, hexPart, false},
		{"other algorithm", secret, body, "sha1=" + hexPart, false},
		{"truncated", secret, body, sig[:len(sig)-2], false},
		{"not hex", secret, body, "sha256=" + strings.Repeat("zz", 32), false},
		{"flipped digit", secret, body, sig[:len(sig)-1] + flip(sig[len(sig)-1]), false},
		{"empty secret", nil, body, webhook.LegacySign(nil, body), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := webhook.VerifyLegacy(tc.secret, tc.body, tc.header)
			if tc.ok && err != nil {
				t.Errorf("Verify = %v, want nil", err)
			}
			if !tc.ok && !errors.Is(err, webhook.ErrBadSignature) {
				t.Errorf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

func flip(b byte) string {
	if b == '0' {
		return "1"
	}
	return "0"
}

func TestSuccessStatuses(t *testing.T) {
	for _, code := range []int{200, 201, 202, 204, 299} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			rec := newRecorder(t, answer{Status: code, Body: "ok"})
			h := newHandler(t, webhook.Config{URL: rec.srv.URL})
			if err := h.Handle(context.Background(), commit("a", 0)); err != nil {
				t.Errorf("Handle = %v, want nil", err)
			}
			if err := h.HandleBatch(context.Background(), []store.Commit{commit("a", 0)}); err != nil {
				t.Errorf("HandleBatch = %v, want nil", err)
			}
		})
	}
}

func TestErrorStatuses(t *testing.T) {
	for _, code := range []int{301, 302, 304, 307, 400, 401, 404, 409, 410, 422, 429, 500, 502, 503, 504} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			var followed atomic.Bool
			mux := http.NewServeMux()
			mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
				if code >= 300 && code < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(code)
				if code != 304 && code >= 200 {
					_, _ = io.WriteString(w, "rejected: bad event")
				}
			})
			mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Store(true) })
			srv := httptest.NewServer(mux)
			defer srv.Close()
			h := newHandler(t, webhook.Config{URL: srv.URL + "/hook"})
			err := h.Handle(context.Background(), commit("a", 0))
			var se *webhook.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Handle = %v, want a *StatusError", err)
			}
			if se.StatusCode != code {
				t.Errorf("StatusCode %d, want %d", se.StatusCode, code)
			}
			if code != 304 && se.Body != "rejected: bad event" {
				t.Errorf("Body %q, want the answer's", se.Body)
			}
			if code != 304 && !strings.Contains(err.Error(), "rejected: bad event") {
				t.Errorf("message %q does not quote the answer", err)
			}
			if se.Endpoint != srv.URL || strings.Contains(err.Error(), "/hook") {
				t.Errorf("Endpoint %q, message %q: want scheme and host only", se.Endpoint, err)
			}
			if se.RetryAfter != 0 || strings.Contains(err.Error(), "retry after") || strings.HasPrefix(err.Error(), "skip") {
				t.Errorf("Handle = %v: without Retry-After, want a plain *StatusError", err)
			}
			if followed.Load() {
				t.Errorf("the redirect was followed")
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	cases := []struct {
		name       string
		status     int
		retryAfter string
		max        time.Duration
		want       time.Duration
		retry      bool // a subscribe.RetryAfter error
	}{
		{"429 seconds", 429, "3", 0, 3 * time.Second, true},
		{"503 seconds", 503, " 42 ", 0, 42 * time.Second, true},
		{"503 zero", 503, "0", 0, 0, true},
		{"429 date", 429, now.Add(7 * time.Second).Format(http.TimeFormat), 0, 7 * time.Second, true},
		{"503 RFC 850 date", 503, now.Add(45 * time.Second).Format("Monday, 02-Jan-06 15:04:05 GMT"), 0, 45 * time.Second, true},
		{"503 past date", 503, now.Add(-time.Hour).Format(http.TimeFormat), 0, 0, true},
		{"capped at the default", 503, "3600", 0, webhook.DefaultMaxRetryAfter, true},
		{"capped at MaxRetryAfter", 429, "20", 5 * time.Second, 5 * time.Second, true},
		{"huge", 429, "99999999999999999999999", 0, webhook.DefaultMaxRetryAfter, true},
		{"garbage", 429, "soon", 0, 0, false},
		{"negative", 503, "-5", 0, 0, false},
		{"none", 503, "", 0, 0, false},
		{"500 ignores it", 500, "5", 0, 0, false},
		{"400 ignores it", 400, "5", 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.retryAfter != "" {
				hdr.Set("Retry-After", tc.retryAfter)
			}
			rec := newRecorder(t, answer{Status: tc.status, Header: hdr, Body: "busy"})
			h := newHandler(t, webhook.Config{URL: rec.srv.URL, MaxRetryAfter: tc.max})
			webhook.SetClock(h, func() time.Time { return now })
			err := h.Handle(context.Background(), commit("a", 0))
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status {
				t.Fatalf("Handle = %v, want a *StatusError %d", err, tc.status)
			}
			if se.RetryAfter != tc.want {
				t.Errorf("RetryAfter %v, want %v", se.RetryAfter, tc.want)
			}
			if tc.retry {
				if want := subscribe.RetryAfter(tc.want, se).Error(); err.Error() != want {
					t.Errorf("Handle = %q, want subscribe.RetryAfter: %q", err, want)
				}
			} else if !se.Transient() {
				if want := subscribe.Permanent(se).Error(); err.Error() != want {
					t.Errorf("Handle = %q, want subscribe.Permanent: %q", err, want)
				}
			} else if err != error(se) {
				t.Errorf("Handle = %q, want the *StatusError itself", err)
			}
		})
	}
}

// TestErrorClasses checks how the worker classifies each failure of a
// request (subscribe.Classify): a refused connection, a timeout, 5xx, 408,
// 425 and 429 are transient, any other 4xx permanent, and the
// *StatusError stays reachable with errors.As.
func TestErrorClasses(t *testing.T) {
	cases := []struct {
		status int
		header string // Retry-After
		want   subscribe.Failure
	}{
		{500, "", subscribe.FailureTransient},
		{502, "", subscribe.FailureTransient},
		{503, "", subscribe.FailureTransient},
		{503, "2", subscribe.FailureTransient},
		{504, "", subscribe.FailureTransient},
		{408, "", subscribe.FailureTransient},
		{425, "", subscribe.FailureTransient},
		{429, "", subscribe.FailureTransient},
		{429, "1", subscribe.FailureTransient},
		{302, "", subscribe.FailureTransient},
		{400, "", subscribe.FailurePermanent},
		{401, "", subscribe.FailurePermanent},
		{403, "", subscribe.FailurePermanent},
		{404, "", subscribe.FailurePermanent},
		{410, "", subscribe.FailurePermanent},
		{413, "", subscribe.FailurePermanent},
		{422, "", subscribe.FailurePermanent},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.header), func(t *testing.T) {
			hdr := http.Header{}
			if tc.header != "" {
				hdr.Set("Retry-After", tc.header)
			}
			rec := newRecorder(t, answer{Status: tc.status, Header: hdr})
			h := newHandler(t, webhook.Config{URL: rec.srv.URL})
			err := h.Handle(context.Background(), commit("a", 0))
			if got := subscribe.Classify(err); got != tc.want {
				t.Errorf("Classify(%v) = %v; want %v", err, got, tc.want)
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status || se.Transient() != (tc.want == subscribe.FailureTransient) {
				t.Errorf("Handle = %v; want a *StatusError %d, transient %v", err, tc.status, tc.want == subscribe.FailureTransient)
			}
		})
	}
	t.Run("refused connection", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		h := newHandler(t, webhook.Config{URL: "http://" + addr + "/hook"})
		err = h.Handle(context.Background(), commit("a", 0))
		if err == nil || subscribe.Classify(err) != subscribe.FailureTransient {
			t.Errorf("Handle = %v, %v; want a transient error", err, subscribe.Classify(err))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		h := newHandler(t, webhook.Config{URL: srv.URL, Timeout: 50 * time.Millisecond})
		err := h.Handle(context.Background(), commit("a", 0))
		if !errors.Is(err, context.DeadlineExceeded) || subscribe.Classify(err) != subscribe.FailureTransient {
			t.Errorf("Handle = %v, %v; want a transient deadline error", err, subscribe.Classify(err))
		}
	})
	t.Run("events that cannot be encoded", func(t *testing.T) {
		h := newHandler(t, webhook.Config{URL: "http://127.0.0.1:1/hook"})
		c := commit("a", 0)
		c.Events = []byte(`[not json`)
		for _, err := range []error{h.Handle(context.Background(), c), h.HandleBatch(context.Background(), []subscribe.Commit{c})} {
			if subscribe.Classify(err) != subscribe.FailurePermanent {
				t.Errorf("Handle = %v; want a permanent error", err)
			}
		}
	})
}

func TestErrorsHideSecrets(t *testing.T) {
	secret := "hmac-secret-value"
	token := "Bearer very-secret-token"
	// The receiver echoes what it got, secrets included.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "auth=%s secret=%s %s", r.Header.Get("Authorization"), secret, strings.Repeat("é", 400))
	}))
	defer srv.Close()
	h := newHandler(t, webhook.Config{
		URL:    srv.URL + "/services/T000/PATH-TOKEN?key=QUERY-TOKEN",
		Secret: []byte(secret),
		Header: http.Header{"Authorization": {token}},
	})
	err := h.Handle(context.Background(), commit("a", 0))
	var se *webhook.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Handle = %v, want a *StatusError", err)
	}
	for _, s := range []string{secret, "very-secret-token", "PATH-TOKEN", "QUERY-TOKEN"} {
		if strings.Contains(err.Error(), s) || strings.Contains(se.Body, s) {
			t.Errorf("error %q leaks %q", err, s)
		}
	}
	if !strings.HasPrefix(se.Body, "auth=[redacted] secret=[redacted] é") {
		t.Errorf("Body %q, want the redacted answer", se.Body)
	}
	if len(se.Body) > webhook.MaxErrorBodyBytes || !utf8Valid(se.Body) {
		t.Errorf("Body is %d bytes (max %d) or cut inside a character", len(se.Body), webhook.MaxErrorBodyBytes)
	}

	// Network errors name the host only, too.
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	h = newHandler(t, webhook.Config{URL: "http://user:pw@" + addr + "/p/PATH-TOKEN?key=QUERY-TOKEN", Header: http.Header{"Authorization": {token}}})
	err = h.Handle(context.Background(), commit("a", 0))
	for _, s := range []string{"very-secret-token", "PATH-TOKEN", "QUERY-TOKEN", "pw"} {
		if err == nil || strings.Contains(err.Error(), s) {
			t.Errorf("error %v leaks %q", err, s)
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "?") == s }

func TestConnectionsAreReused(t *testing.T) {
	var conns atomic.Int32
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write(bytes.Repeat([]byte("x"), 32<<10)) // a body the handler must drain
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	h := newHandler(t, webhook.Config{URL: srv.URL})
	for i := range 6 {
		if i == 3 {
			status.Store(http.StatusInternalServerError)
		}
		err := h.Handle(context.Background(), commit("a", int64(i)))
		if (i < 3) != (err == nil) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 6 sequential requests, want 1 (bodies not drained?)", n)
	}
}

func TestTimeout(t *testing.T) {
	srv, _ := hangingServer(t)
	h := newHandler(t, webhook.Config{URL: srv.URL, Timeout: 50 * time.Millisecond})
	start := time.Now()
	err := h.Handle(context.Background(), commit("a", 0))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handle = %v, want context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Errorf("message %q does not name the timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Handle returned after %v: the per-request timeout did not apply", d)
	}
}

func TestContextCancellation(t *testing.T) {
	srv, arrived := hangingServer(t)
	h := newHandler(t, webhook.Config{URL: srv.URL, Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.HandleBatch(ctx, []store.Commit{commit("a", 0)}) }()
	<-arrived
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("HandleBatch = %v, want context.Canceled", err)
		}
		if strings.Contains(err.Error(), "no answer within") {
			t.Errorf("message %q blames the timeout for a cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("HandleBatch did not return after its context was cancelled")
	}

	// A context already done sends nothing.
	if err := h.Handle(ctx, commit("a", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Handle with a done context = %v, want context.Canceled", err)
	}
	select {
	case <-arrived:
		t.Error("a request was sent with a done context")
	default:
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, webhook.Config{URL: "http://" + addr + "/hook"})
	err = h.Handle(context.Background(), commit("a", 0))
	if err == nil {
		t.Fatal("Handle to a closed port = nil, want an error")
	}
	var se *webhook.StatusError
	var oe *net.OpError
	if errors.As(err, &se) || !errors.As(err, &oe) {
		t.Errorf("Handle = %v (%T), want a network error", err, err)
	}
	if !strings.Contains(err.Error(), "http://"+addr) {
		t.Errorf("message %q does not name the endpoint", err)
	}
}

func TestCustomClient(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusFound, Header: http.Header{"Location": {"/elsewhere"}}})
	var trips atomic.Int32
	follow := func(*http.Request, []*http.Request) error { return nil }
	client := &http.Client{
		Transport:     roundTripFunc(func(r *http.Request) (*http.Response, error) { trips.Add(1); return http.DefaultTransport.RoundTrip(r) }),
		CheckRedirect: follow,
	}
	h := newHandler(t, webhook.Config{URL: rec.srv.URL + "/hook", Client: client})
	err := h.Handle(context.Background(), commit("a", 0))
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Errorf("Handle = %v, want a *StatusError 302 (redirects not followed)", err)
	}
	if n := trips.Load(); n != 1 {
		t.Errorf("%d round trips through Config.Client, want 1", n)
	}
	if reqs := rec.requests(); len(reqs) != 1 || reqs[0].Path != "/hook" {
		t.Errorf("server got %+v, want one POST /hook", reqs)
	}
	if client.CheckRedirect == nil || client.CheckRedirect(nil, nil) != nil {
		t.Error("New changed the caller's Client")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConcurrentUse(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusOK})
	h := newHandler(t, webhook.Config{URL: rec.srv.URL, Secret: []byte("k"), Header: http.Header{"Authorization": {"x"}}})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if err := h.Handle(context.Background(), commit(fmt.Sprint("agg-", i), 0)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	reqs := rec.requests()
	seen := map[string]bool{}
	for _, r := range reqs {
		if err := webhook.Verify([]byte("k"), r.Body, r.Header); err != nil {
			t.Errorf("request %s: %v", r.Header.Get(webhook.DeliveryHeader), err)
		}
		seen[r.Header.Get(webhook.DeliveryHeader)] = true
	}
	if len(reqs) != 16 || len(seen) != 16 {
		t.Errorf("server got %d requests for %d deliveries, want 16 each", len(reqs), len(seen))
	}
}

func TestDefaults(t *testing.T) {
	h := newHandler(t, webhook.Config{URL: "https://example.com/hook"})
	if got := webhook.TimeoutOf(h); got != 10*time.Second {
		t.Errorf("default Timeout %v, want 10s", got)
	}
	h = newHandler(t, webhook.Config{URL: "HTTPS://example.com/hook", Timeout: time.Second})
	if got := webhook.TimeoutOf(h); got != time.Second {
		t.Errorf("Timeout %v, want 1s", got)
	}
}

func TestInvalidConfig(t *testing.T) {
	cases := []struct {
		name  string
		cfg   webhook.Config
		field string
	}{
		{"empty URL", webhook.Config{}, "URL"},
		{"relative URL", webhook.Config{URL: "/hooks/commits"}, "URL"},
		{"no scheme", webhook.Config{URL: "example.com/hooks?token=QUERY-TOKEN"}, "URL"},
		{"ftp scheme", webhook.Config{URL: "ftp://example.com/hooks"}, "URL"},
		{"no host", webhook.Config{URL: "http:///hooks"}, "URL"},
		{"opaque", webhook.Config{URL: "https:example.com"}, "URL"},
		{"unparsable", webhook.Config{URL: "http://exa mple.com/?token=QUERY-TOKEN"}, "URL"},
		{"negative timeout", webhook.Config{URL: "https://example.com", Timeout: -time.Second}, "Timeout"},
		{"negative MaxRetryAfter", webhook.Config{URL: "https://example.com", MaxRetryAfter: -1}, "MaxRetryAfter"},
		{"subscription with newline", webhook.Config{URL: "https://example.com", Subscription: "a\nb"}, "Subscription"},
		{"reserved signature header", webhook.Config{URL: "https://example.com", Header: http.Header{"x-eventstore-signature": {"QUERY-TOKEN"}}}, "Header"},
		{"reserved Content-Type", webhook.Config{URL: "https://example.com", Header: http.Header{"Content-Type": {"text/plain"}}}, "Header"},
		{"bad header name", webhook.Config{URL: "https://example.com", Header: http.Header{"Bad Name": {"v"}}}, "Header"},
		{"header value with newline", webhook.Config{URL: "https://example.com", Header: http.Header{"Authorization": {"QUERY-TOKEN\r\nX: y"}}}, "Header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := webhook.New(tc.cfg)
			if !errors.Is(err, webhook.ErrInvalidConfig) || h != nil {
				t.Fatalf("New = %v, %v; want ErrInvalidConfig", h, err)
			}
			if !strings.Contains(err.Error(), ": "+tc.field+":") {
				t.Errorf("error %q does not name field %s", err, tc.field)
			}
			if strings.Contains(err.Error(), "QUERY-TOKEN") {
				t.Errorf("error %q leaks a URL or header value", err)
			}
		})
	}
}
