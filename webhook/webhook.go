package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// Headers the Handler sets on every request (see the package
// documentation).
const (
	// SignatureHeader carries LegacySign(Config.Secret, body) when a
	// secret is set and Config.LegacySignature asks for it.
	//
	// Deprecated: receivers verify StandardSignatureHeader with Verify.
	SignatureHeader = "X-Eventstore-Signature"
	// SubscriptionHeader carries Config.Subscription when it is set.
	SubscriptionHeader = "X-Eventstore-Subscription"
	// DeliveryHeader names what a request carries: "aggregateId/version"
	// for one commit, "aggregateId/firstVersion-lastVersion" for a batch,
	// with the aggregate id escaped by url.PathEscape.
	DeliveryHeader = "X-Eventstore-Delivery"
)

// Defaults and bounds.
const (
	// DefaultTimeout bounds one request when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxRetryAfter caps a Retry-After delay when
	// Config.MaxRetryAfter is zero.
	DefaultMaxRetryAfter = time.Minute
	// MaxDrainBytes is how much of a response body is read (and then
	// discarded) so that the connection can serve the next request; a
	// longer body is left unread and its connection closed.
	MaxDrainBytes = 64 << 10
	// MaxErrorBodyBytes is how much of a non-2xx answer's body a
	// *StatusError quotes.
	MaxErrorBodyBytes = 256
)

const userAgent = "eventstore-webhook"

// Errors.
var (
	// ErrInvalidConfig: New was given an unusable Config; the error names
	// the field.
	ErrInvalidConfig = errors.New("webhook: invalid configuration")
	// ErrBadSignature: Verify found the signature missing, malformed or
	// not matching, the timestamp outside the tolerance, or the id missing
	// or not that of the delivery headers (VerifyLegacy: the legacy
	// signature missing, malformed or not matching the body).
	ErrBadSignature = errors.New("webhook: bad signature")
)

// StatusError reports an answer whose status is not 2xx.
type StatusError struct {
	// Endpoint is the URL's scheme and host ("https://example.com"): its
	// path and query are left out, as they may carry a token.
	Endpoint string
	// StatusCode is the answer's HTTP status code.
	StatusCode int
	// Body is the first bytes of the answer's body (at most
	// MaxErrorBodyBytes, cut at a UTF-8 boundary), with Config.Secret and
	// every Config.Header value of 4 bytes or more replaced by
	// "[redacted]". For messages only.
	Body string
	// RetryAfter is the delay a 429 or 503 answer asked for with its
	// Retry-After header, capped at Config.MaxRetryAfter; zero when there
	// was none (or it asked for no delay).
	RetryAfter time.Duration
}

// Transient reports whether the status may go away by itself, so that the
// request is worth sending again: 408 Request Timeout, 425 Too Early, 429
// Too Many Requests, any 5xx, and any status outside 4xx and 5xx (a
// redirect, which is never followed, may come from a proxy in the middle
// of a deploy). Any other 4xx is permanent: the receiver refuses the
// request as it is.
func (e *StatusError) Transient() bool {
	switch c := e.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooEarly, c == http.StatusTooManyRequests:
		return true
	case c >= 400 && c < 500:
		return false
	}
	return true
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook: POST %s: status %d", e.Endpoint, e.StatusCode)
	if t := http.StatusText(e.StatusCode); t != "" {
		msg += " " + t
	}
	if e.Body != "" {
		msg += fmt.Sprintf(", body %q", e.Body)
	}
	return msg
}

// Batch is the body HandleBatch sends: {"commits":[…]}. Receivers may
// decode into it.
type Batch struct {
	Commits []store.Commit `json:"commits"`
}

// Config configures a Handler. URL is required; the zero value of every
// other field means its default.
type Config struct {
	// URL is where commits are POSTed: an absolute http or https URL.
	// Required.
	URL string
	// Secret, when not empty, is the HMAC key that signs every request
	// the Standard Webhooks way: StandardSignatureHeader carries Sign(Secret,
	// id, timestamp, body). ParseSecret turns a "whsec_…" secret into its
	// key. Default none (no signature header).
	Secret []byte
	// LegacySignature also sends the deprecated SignatureHeader
	// (LegacySign(Secret, body)), for receivers still checking it with
	// VerifyLegacy during their move to Verify. Default false: not sent.
	// It is for one deprecation period, and goes with the header.
	LegacySignature bool
	// OtherSecrets are keys that sign every request too, each adding a
	// signature to StandardSignatureHeader: the specification's rotation
	// without downtime (sign with the new key and the old one until every
	// receiver has the new one). Ignored without Secret. Default none.
	OtherSecrets [][]byte
	// AllowInsecure allows a plain http URL to a host that is not a
	// loopback one (see IsLoopbackHost). Default false: New refuses it,
	// since the request would carry the commits, the headers and the
	// signature in the clear.
	AllowInsecure bool
	// Timeout bounds one request, from sending it to reading its answer.
	// It applies on top of the caller's context and of Client.Timeout.
	// Default 10 s (DefaultTimeout); negative is invalid.
	Timeout time.Duration
	// Client sends the requests. Default: a client of its own with a
	// pooled transport (proxy from the environment, up to 64 idle
	// connections to the endpoint, 90 s idle timeout, 10 s TLS handshake
	// timeout). Its CheckRedirect is ignored: redirects are never followed.
	Client *http.Client
	// Header is sent with every request (e.g. Authorization). Its values
	// are never logged nor put in errors. It may not set Content-Type,
	// Content-Length, Host, Transfer-Encoding or any X-Eventstore-…
	// header; it may set User-Agent.
	Header http.Header
	// Subscription is sent in SubscriptionHeader, so that one receiver can
	// serve several subscriptions. Default empty: no header. It must be a
	// valid header value (no control characters).
	Subscription string
	// MaxRetryAfter caps the delay a Retry-After header may ask for.
	// Default 1 minute (DefaultMaxRetryAfter); negative is invalid.
	MaxRetryAfter time.Duration
}

// Handler POSTs commits to a URL. It implements subscribe.Handler and
// subscribe.BatchHandler. It is safe for concurrent use; create it with New.
type Handler struct {
	url           string
	endpoint      string // scheme://host, for errors
	secret        []byte
	timeout       time.Duration
	maxRetryAfter time.Duration
	client        *http.Client
	header        http.Header
	subscription  string
	redact        []string // secret and header values, longest first
	now           func() time.Time

	// legacySignature: also send SignatureHeader.
	legacySignature bool
	// otherKeys sign too (Config.OtherSecrets).
	otherKeys [][]byte
}

var (
	_ subscribe.Handler      = (*Handler)(nil)
	_ subscribe.BatchHandler = (*Handler)(nil)
)

// New validates cfg and returns a Handler. It starts no goroutine and makes
// no request. An invalid Config returns an error matching ErrInvalidConfig
// that names the field (never a secret or header value).
func New(cfg Config) (*Handler, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if cfg.URL == "" {
		return nil, bad("URL", "empty")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// url.Error repeats the URL, which may hold a token: keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, bad("URL", "%v", err)
	}
	switch {
	case u.Scheme == "":
		return nil, bad("URL", "not absolute: want http:// or https://")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, bad("URL", "scheme %q: want http or https", u.Scheme)
	case u.Host == "":
		return nil, bad("URL", "no host")
	}
	if reason := insecureReason(u); reason != "" && !cfg.AllowInsecure {
		return nil, bad("URL", "%s", reason)
	}
	if cfg.Timeout < 0 {
		return nil, bad("Timeout", "negative (%v)", cfg.Timeout)
	}
	if cfg.MaxRetryAfter < 0 {
		return nil, bad("MaxRetryAfter", "negative (%v)", cfg.MaxRetryAfter)
	}
	if !validHeaderValue(cfg.Subscription) {
		return nil, bad("Subscription", "contains a control character")
	}
	h := &Handler{
		url:           u.String(),
		endpoint:      u.Scheme + "://" + u.Host,
		timeout:       cfg.Timeout,
		maxRetryAfter: cfg.MaxRetryAfter,
		header:        make(http.Header, len(cfg.Header)),
		subscription:  cfg.Subscription,
		now:           time.Now,

		legacySignature: cfg.LegacySignature,
	}
	if h.timeout == 0 {
		h.timeout = DefaultTimeout
	}
	if h.maxRetryAfter == 0 {
		h.maxRetryAfter = DefaultMaxRetryAfter
	}
	if len(cfg.Secret) > 0 {
		h.secret = bytes.Clone(cfg.Secret)
		h.redact = append(h.redact, string(cfg.Secret))
		for _, k := range cfg.OtherSecrets {
			if len(k) > 0 {
				h.otherKeys = append(h.otherKeys, bytes.Clone(k))
				h.redact = append(h.redact, string(k))
			}
		}
	}
	for k, vs := range cfg.Header {
		if !validHeaderName(k) {
			return nil, bad("Header", "invalid header name %q", k)
		}
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if reservedHeader(ck) {
			return nil, bad("Header", "%s is set by the handler", ck)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return nil, bad("Header", "value of %s contains a control character", ck)
			}
			h.header.Add(ck, v)
			if len(v) >= 4 {
				h.redact = append(h.redact, v)
			}
		}
	}
	// Replace longer values first, so that a value containing another is
	// redacted whole.
	slices.SortFunc(h.redact, func(a, b string) int { return len(b) - len(a) })
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		c = http.Client{Transport: defaultTransport()}
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	h.client = &c
	return h, nil
}

// defaultTransport is a pooled transport sized for a worker that handles
// several aggregates at once against one endpoint.
func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Handle POSTs one commit (the JSON of store.Commit) and returns nil once
// the endpoint answers 2xx. See the package documentation for the errors.
func (h *Handler) Handle(ctx context.Context, c subscribe.Commit) error {
	body, err := json.Marshal(c)
	if err != nil {
		return subscribe.Permanent(fmt.Errorf("webhook: encode aggregate %q version %d: %w", c.AggregateID, c.Version, err))
	}
	return h.post(ctx, body, url.PathEscape(c.AggregateID)+"/"+strconv.FormatInt(c.Version, 10))
}

// HandleBatch POSTs consecutive commits of one aggregate in one request
// ({"commits":[…]}) and returns nil once the endpoint answers 2xx. Any
// failure is a failure of the first commit: it returns a plain error, never
// a *subscribe.BatchError. No commits: nil, and no request.
func (h *Handler) HandleBatch(ctx context.Context, cs []subscribe.Commit) error {
	if len(cs) == 0 {
		return nil
	}
	body, err := json.Marshal(Batch{Commits: cs})
	if err != nil {
		return subscribe.Permanent(fmt.Errorf("webhook: encode aggregate %q versions %d-%d: %w", cs[0].AggregateID, cs[0].Version, cs[len(cs)-1].Version, err))
	}
	first, last := cs[0], cs[len(cs)-1]
	return h.post(ctx, body, url.PathEscape(first.AggregateID)+"/"+
		strconv.FormatInt(first.Version, 10)+"-"+strconv.FormatInt(last.Version, 10))
}

// post sends one request and maps its outcome to an error.
func (h *Handler) post(ctx context.Context, body []byte, delivery string) error {
	rctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: POST %s: %w", h.endpoint, unwrapURLError(err))
	}
	req.Header = h.header.Clone()
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(DeliveryHeader, delivery)
	if h.subscription != "" {
		req.Header.Set(SubscriptionHeader, h.subscription)
	}
	h.setStandardHeaders(req.Header, body, delivery)

	resp, err := h.client.Do(req)
	if err != nil {
		err = unwrapURLError(err)
		if ctx.Err() == nil && rctx.Err() != nil {
			// The caller's context is live: the request's own timeout ended it.
			return fmt.Errorf("webhook: POST %s: no answer within %v: %w", h.endpoint, h.timeout, err)
		}
		return fmt.Errorf("webhook: POST %s: %w", h.endpoint, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain so that the connection is reused; the answer is already
		// known, so a failure here does not matter.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxDrainBytes))
		return nil
	}
	prefix, _ := io.ReadAll(io.LimitReader(resp.Body, MaxDrainBytes))
	se := &StatusError{Endpoint: h.endpoint, StatusCode: resp.StatusCode, Body: h.quote(prefix)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), h.now()); ok {
			se.RetryAfter = min(d, h.maxRetryAfter)
			return subscribe.RetryAfter(se.RetryAfter, se)
		}
	}
	if !se.Transient() {
		return subscribe.Permanent(se)
	}
	return se
}

// quote redacts the secret and header values from an answer's body and cuts
// it to MaxErrorBodyBytes at a UTF-8 boundary.
func (h *Handler) quote(b []byte) string {
	s := string(b)
	for _, v := range h.redact {
		s = strings.ReplaceAll(s, v, "[redacted]")
	}
	if len(s) > MaxErrorBodyBytes {
		n := MaxErrorBodyBytes
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// A date in the past is no delay. ok is false when v is neither.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return time.Duration(1<<63 - 1), true
			}
			return 0, false
		}
		if n > uint64((1<<63-1)/time.Second) {
			return time.Duration(1<<63 - 1), true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// unwrapURLError drops the *url.Error around a client error: its message
// repeats the whole URL, which may hold a token.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// reservedHeader reports whether the handler sets header k (canonical form)
// itself.
func reservedHeader(k string) bool {
	switch k {
	case "Content-Type", "Content-Length", "Host", "Transfer-Encoding":
		return true
	}
	return strings.HasPrefix(k, "X-Eventstore-") || strings.HasPrefix(k, "Webhook-")
}

// validHeaderName reports whether k is an RFC 9110 token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v has no control character other than
// a horizontal tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
