package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of the Standard Webhooks specification
// (https://www.standardwebhooks.com/), set on every request (see the
// package documentation).
const (
	// IDHeader carries the delivery's id: the same for every attempt of
	// one delivery (see MessageID), so that a receiver can de-duplicate.
	IDHeader = "Webhook-Id"
	// TimestampHeader carries the attempt's time in Unix seconds.
	TimestampHeader = "Webhook-Timestamp"
	// StandardSignatureHeader carries, when Config.Secret is set,
	// "v1," and the base64 HMAC-SHA256 of "id.timestamp.body" (see Sign).
	StandardSignatureHeader = "Webhook-Signature"
)

// Signing defaults and bounds.
const (
	// DefaultTolerance is how far a request's timestamp may be from the
	// receiver's clock, either way, when VerifyOptions.Tolerance is zero.
	DefaultTolerance = 5 * time.Minute
	// SecretPrefix starts a secret in the Standard Webhooks form:
	// "whsec_" and the base64 of the key (see ParseSecret).
	SecretPrefix = "whsec_"
	// MinSecretBytes and MaxSecretBytes bound the key of a secret in the
	// "whsec_" form, as the specification does.
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// ErrBadSecret: ParseSecret was given a "whsec_" secret whose key is not
// base64 or not 24 to 64 bytes long.
var ErrBadSecret = errors.New("webhook: bad secret")

// signatureVersion names the symmetric scheme in a signature.
const signatureVersion = "v1"

// ParseSecret returns the HMAC key a secret stands for. A secret starting
// with "whsec_" (the form the Standard Webhooks libraries take) is "whsec_"
// and the standard base64 of the key, which must be 24 to 64 bytes; an
// error matching ErrBadSecret says why it is not (never quoting it). Any
// other non-empty secret is a raw secret: its bytes are the key, as the
// daemon used them before it signed the Standard Webhooks way; FormatSecret
// gives its "whsec_" form for a receiver's library. An empty secret is an
// empty key (no signing).
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf(`%w: after %q, want the standard base64 of the key (with its "=" padding)`, ErrBadSecret, SecretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("%w: the key is %d bytes, want %d to %d", ErrBadSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}

// ParseSecrets reads one secret, or, for a rotation, several "whsec_"
// secrets separated by spaces (a "whsec_" secret has no space), the first
// the current one: see Config.OtherSecrets. A value with a space that is
// not such a list is one raw secret. Errors are ParseSecret's, naming which
// secret of the list is at fault.
func ParseSecrets(secrets string) ([][]byte, error) {
	fields := strings.Fields(secrets)
	list := len(fields) > 1
	for _, f := range fields {
		list = list && strings.HasPrefix(f, SecretPrefix)
	}
	if !list {
		key, err := ParseSecret(secrets)
		if err != nil {
			return nil, err
		}
		return [][]byte{key}, nil
	}
	keys := make([][]byte, len(fields))
	for i, f := range fields {
		key, err := ParseSecret(f)
		if err != nil {
			return nil, fmt.Errorf("%w (secret %d of %d)", err, i+1, len(fields))
		}
		keys[i] = key
	}
	return keys, nil
}

// FormatSecret returns key in the Standard Webhooks form: "whsec_" and
// its standard base64. A receiver's Standard Webhooks library takes it,
// whether the daemon was given that form or a raw secret.
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// MessageID returns the id of a delivery (IDHeader): "msg_" and the
// unpadded base64url of the first 18 bytes of the SHA-256 of the
// subscription and the delivery (the value of DeliveryHeader,
// "aggregateId/version" or "aggregateId/first-last"), separated by a
// newline. Every attempt of one delivery carries the same id, and so does
// a delivery of the same commits to the same subscription after a restart;
// the id has no ".", as the specification asks.
func MessageID(subscription, delivery string) string {
	sum := sha256.Sum256([]byte(subscription + "\n" + delivery))
	return "msg_" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// Sign returns the value of StandardSignatureHeader for a request: "v1,"
// and the standard base64 of the HMAC-SHA256, under key, of id, ".", the
// timestamp in Unix seconds, "." and body, as the Standard Webhooks
// specification defines it.
func Sign(key []byte, id string, timestamp time.Time, body []byte) string {
	return signatureVersion + "," + base64.StdEncoding.EncodeToString(mac(key, id, timestamp.Unix(), body))
}

func mac(key []byte, id string, unix int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(unix, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifyOptions adjusts Verify.
type VerifyOptions struct {
	// Tolerance is how far the request's timestamp may be from Now,
	// either way. Default 5 minutes (DefaultTolerance); negative is
	// invalid.
	Tolerance time.Duration
	// Now is the receiver's clock. Default time.Now.
	Now func() time.Time
}

// Verify checks a request against key, for receivers: its body (the raw
// bytes, before any decoding) and its headers. It returns nil when
//
//   - IDHeader is set and has no "." (a "." would make the signed content
//     ambiguous);
//   - TimestampHeader is Unix seconds within VerifyOptions.Tolerance of
//     the clock (default 5 minutes either way), so that a captured request
//     cannot be replayed later;
//   - one of the space-separated "v1,<base64>" signatures of
//     StandardSignatureHeader is Sign(key, id, timestamp, body), compared
//     in constant time (others, such as a signature under a retired key or
//     of another scheme, are ignored);
//   - when the request carries DeliveryHeader, IDHeader is
//     MessageID(SubscriptionHeader, DeliveryHeader), so that the unsigned
//     delivery and subscription headers are bound to the signed id: a
//     request whose id, delivery or subscription was changed is refused.
//
// Otherwise it returns an error matching ErrBadSignature that says which
// check failed; so does an empty key, which authenticates nothing. To
// rotate a secret, a receiver accepts a request that either key verifies.
func Verify(key, body []byte, header http.Header, optFns ...func(*VerifyOptions)) error {
	o := VerifyOptions{Tolerance: DefaultTolerance, Now: time.Now}
	for _, fn := range optFns {
		fn(&o)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSignature, fmt.Sprintf(format, args...))
	}
	switch {
	case len(key) == 0:
		return bad("the receiver's key is empty")
	case o.Tolerance < 0:
		return bad("negative tolerance %v", o.Tolerance)
	}
	if o.Tolerance == 0 {
		o.Tolerance = DefaultTolerance
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	id := header.Get(IDHeader)
	switch {
	case id == "":
		return bad("no %s header", IDHeader)
	case strings.Contains(id, "."):
		return bad("%s contains a %q", IDHeader, ".")
	}
	rawTS := header.Get(TimestampHeader)
	unix, err := strconv.ParseInt(rawTS, 10, 64)
	if err != nil {
		return bad("%s %q: want Unix seconds", TimestampHeader, rawTS)
	}
	now := o.Now().Unix()
	tol := int64(o.Tolerance / time.Second)
	switch {
	case unix < now-tol:
		return bad("%s is %ds old, more than the tolerance of %v", TimestampHeader, now-unix, o.Tolerance)
	case unix > now+tol:
		return bad("%s is %ds ahead of the clock, more than the tolerance of %v", TimestampHeader, unix-now, o.Tolerance)
	}
	sigs := strings.Fields(header.Get(StandardSignatureHeader))
	if len(sigs) == 0 {
		return bad("no %s header", StandardSignatureHeader)
	}
	want := mac(key, id, unix, body)
	matched := false
	for _, s := range sigs {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != signatureVersion {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			matched = true
			break
		}
	}
	if !matched {
		return bad("no %s signature in %s matches the id, timestamp and body", signatureVersion, StandardSignatureHeader)
	}
	if d := header.Get(DeliveryHeader); d != "" {
		if want := MessageID(header.Get(SubscriptionHeader), d); id != want {
			return bad("%s does not belong to the %s and %s headers", IDHeader, DeliveryHeader, SubscriptionHeader)
		}
	}
	return nil
}

// setStandardHeaders sets the Standard Webhooks headers of one attempt of
// a delivery: its id, the attempt's time, and, with a key, the signature.
func (h *Handler) setStandardHeaders(header http.Header, body []byte, delivery string) {
	id := MessageID(h.subscription, delivery)
	now := h.now()
	header.Set(IDHeader, id)
	header.Set(TimestampHeader, strconv.FormatInt(now.Unix(), 10))
	if len(h.secret) == 0 {
		return
	}
	sig := Sign(h.secret, id, now, body)
	for _, k := range h.otherKeys {
		sig += " " + Sign(k, id, now, body)
	}
	header.Set(StandardSignatureHeader, sig)
	if h.legacySignature {
		header.Set(SignatureHeader, LegacySign(h.secret, body))
	}
}

// legacySignaturePrefix names the algorithm in SignatureHeader.
const legacySignaturePrefix = "sha256="

// LegacySign returns the value of the deprecated SignatureHeader for body:
// "sha256=" and the lower-case hex HMAC-SHA256 of body under key. It covers
// the body only: a captured request verifies forever. Handlers send it only
// with Config.LegacySignature, for receivers not yet moved to Verify.
//
// Deprecated: use Sign and Verify (Standard Webhooks).
func LegacySign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return legacySignaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// VerifyLegacy checks header, the value of the deprecated SignatureHeader,
// against body in constant time. It returns nil when header is
// LegacySign(key, body) (the hex may be in either case), and an error
// matching ErrBadSignature otherwise or when key is empty.
//
// Deprecated: it checks no timestamp, so a captured request verifies
// forever; use Verify.
func VerifyLegacy(key, body []byte, header string) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: the receiver's key is empty", ErrBadSignature)
	case header == "":
		return fmt.Errorf("%w: missing", ErrBadSignature)
	}
	hexSum, ok := strings.CutPrefix(strings.TrimSpace(header), legacySignaturePrefix)
	if !ok {
		return fmt.Errorf("%w: want %q followed by hex", ErrBadSignature, legacySignaturePrefix)
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: want %d hex digits after %q", ErrBadSignature, 2*sha256.Size, legacySignaturePrefix)
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: does not match the body", ErrBadSignature)
	}
	return nil
}
