// Package webhook delivers commits to an HTTP endpoint: its Handler is a
// subscribe.Handler and a subscribe.BatchHandler that POSTs each commit, or
// each batch of one aggregate's commits, as JSON to a URL.
//
// # Wire format
//
// Every delivery is one POST request to Config.URL with
// "Content-Type: application/json".
//
// Handle sends one commit. The body is the JSON of store.Commit, exactly as
// json.Marshal encodes it: the events array is embedded as JSON, not as a
// string, with insignificant whitespace removed and "<", ">" and "&" inside
// strings written as \u003c, \u003e and \u0026 (the same JSON values):
//
//	{"commitId":"20240102030405006:account-1","committedAt":1704164645006,"aggregateId":"account-1","version":3,"events":[{"type":"MoneyDeposited","amount":10}]}
//
// HandleBatch sends consecutive commits of one aggregate, in version order,
// in one request. The body is an object with one member, "commits" (the
// JSON of Batch):
//
//	{"commits":[{"commitId":"…","committedAt":…,"aggregateId":"account-1","version":3,"events":[…]},{"commitId":"…","committedAt":…,"aggregateId":"account-1","version":4,"events":[…]}]}
//
// Request headers:
//
//   - Content-Type: application/json
//   - X-Eventstore-Delivery (DeliveryHeader): what the request carries,
//     "aggregateId/version" for Handle and
//     "aggregateId/firstVersion-lastVersion" for HandleBatch (also for a
//     batch of one: "account-1/3-3"). The aggregate id is escaped with
//     url.PathEscape, so the value is ASCII and a "/" in an aggregate id
//     reads "%2F". A retry of the same request carries the same value.
//   - X-Eventstore-Subscription (SubscriptionHeader): Config.Subscription,
//     when set, so that one receiver can serve several subscriptions.
//   - webhook-id (IDHeader): the delivery's id, MessageID(subscription,
//     delivery): the same on every attempt of one delivery, so that a
//     receiver can de-duplicate on it.
//   - webhook-timestamp (TimestampHeader): the attempt's time, in Unix
//     seconds.
//   - webhook-signature (StandardSignatureHeader): when Config.Secret is
//     set, "v1," and the base64 HMAC-SHA256, under the secret, of
//     "id.timestamp.body" (see Sign), as the Standard Webhooks
//     specification (https://www.standardwebhooks.com/) defines it.
//   - X-Eventstore-Signature (SignatureHeader, deprecated): only with
//     Config.LegacySignature, "sha256=" and the hex HMAC-SHA256 of the
//     body alone (see LegacySign), for receivers not yet moved to Verify.
//   - User-Agent: "eventstore-webhook", unless Config.Header sets one.
//   - Every header of Config.Header.
//
// # Delivery semantics
//
// Delivery is at least once, like every subscription's: a receiver may see
// a commit again after a retry, a crash or a lost lease, and should be
// idempotent on (aggregateId, version). The delivery header is a
// convenience, not a complete idempotency key for batches: after a restart
// a batch may start or end at other versions than a batch sent before.
//
// An answer with a 2xx status means the request's commits were handled.
// Anything else is an error, transient or permanent as the worker
// classifies it (subscribe.Classify; see docs/delivery.md): a transient
// one is retried until the commit passes its maximum record age
// (subscribe.RetryPolicy), a permanent one goes at once to the
// subscription's Policy (by default it is parked, where an operator sees
// it and can replay it, never dropped silently):
//
//   - 408, 425, 429, any 5xx, and any status outside 4xx and 5xx return a
//     *StatusError: transient (StatusError.Transient). Redirects (3xx) are
//     never followed, since a POST redirected with 301, 302 or 303 would
//     become a GET without its body and the commit would count as delivered
//     when it was not;
//   - 429 Too Many Requests and 503 Service Unavailable with a Retry-After
//     header (delay-seconds or an HTTP date) return subscribe.RetryAfter
//     wrapping the *StatusError, so that the worker waits as asked (at most
//     Config.MaxRetryAfter) before the next attempt;
//   - any other 4xx returns subscribe.Permanent wrapping the *StatusError:
//     the receiver refuses the commit as it is (a 400, a 401 of a wrong
//     credential, a 404 of a wrong URL, a 410);
//   - a network error (a refused or reset connection), a timeout
//     (Config.Timeout) or the end of the caller's context returns the cause
//     wrapped, matched with errors.Is (context.DeadlineExceeded,
//     context.Canceled) or errors.As: transient;
//   - a commit whose events cannot be encoded returns subscribe.Permanent.
//
// errors.As finds the *StatusError through either wrapper. For HandleBatch
// a failure is a failure of the batch's first commit.
//
// Errors name the endpoint by scheme and host only (the path and query of a
// webhook URL often carry a token) and never contain Config.Secret or the
// values of Config.Header; a receiver's answer body is quoted in a
// *StatusError with those values redacted.
//
// # Verifying a request
//
// A receiver that shares the secret reads the raw body, then checks it
// before decoding:
//
//	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
//	if err != nil { … }
//	if err := webhook.Verify(key, body, r.Header); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//	var c store.Commit
//	err = json.Unmarshal(body, &c)
//
// Verify checks the signature, refuses a timestamp more than 5 minutes from
// the receiver's clock (a captured request cannot be replayed later) and
// an id that is not the one of the delivery and subscription headers. The
// signature covers the id, the timestamp and the body; the delivery and
// subscription headers are bound to it through the id. Receivers in other
// languages use a Standard Webhooks library with the secret in its
// "whsec_" form (FormatSecret). To rotate a secret, Config.OtherSecrets
// signs with the old key too, and a receiver holding either verifies. See
// docs/webhooks.md.
//
// # Plain http
//
// New refuses a plain http URL to a host that is not a loopback one unless
// Config.AllowInsecure says so: the commits, the headers and the signature
// would cross the network in the clear.
//
// A Handler is safe for concurrent use.
package webhook
