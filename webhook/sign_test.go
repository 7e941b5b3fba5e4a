package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// The test vector of the Standard Webhooks specification's libraries.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// vectorWrong is the libraries' example of a signature that matches
	// nothing.
	vectorWrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

func vectorKey(t *testing.T) []byte {
	t.Helper()
	key, err := webhook.ParseSecret(vectorSecret)
	if err != nil {
		t.Fatalf("ParseSecret(the vector's secret): %v", err)
	}
	return key
}

func TestSignSpecVector(t *testing.T) {
	got := webhook.Sign(vectorKey(t), vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if got != vectorSignature {
		t.Errorf("Sign = %s, want %s", got, vectorSignature)
	}
	// The time's sub-second part and zone are not signed.
	if got := webhook.Sign(vectorKey(t), vectorID, time.Unix(vectorTimestamp, 999e6).In(time.FixedZone("x", 3600)), []byte(vectorBody)); got != vectorSignature {
		t.Errorf("Sign with a sub-second time = %s, want %s", got, vectorSignature)
	}
}

func vectorHeader(sig string) http.Header {
	h := http.Header{}
	h.Set(webhook.IDHeader, vectorID)
	h.Set(webhook.TimestampHeader, strconv.Itoa(vectorTimestamp))
	h.Set(webhook.StandardSignatureHeader, sig)
	return h
}

func at(unix int64) func(*webhook.VerifyOptions) {
	return func(o *webhook.VerifyOptions) { o.Now = func() time.Time { return time.Unix(unix, 0) } }
}

func TestVerifySpecVector(t *testing.T) {
	key, body := vectorKey(t), []byte(vectorBody)
	if err := webhook.Verify(key, body, vectorHeader(vectorSignature), at(vectorTimestamp+10)); err != nil {
		t.Errorf("Verify(the vector) = %v", err)
	}
	if err := webhook.Verify(key, body, vectorHeader(vectorWrong), at(vectorTimestamp)); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify(the vector's wrong signature) = %v, want ErrBadSignature", err)
	}
	// Several signatures, space-separated (a key rotation, another scheme):
	// one that matches is enough.
	multi := strings.Join([]string{vectorWrong, "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", vectorSignature, vectorWrong}, " ")
	if err := webhook.Verify(key, body, vectorHeader(multi), at(vectorTimestamp)); err != nil {
		t.Errorf("Verify(several signatures, one right) = %v", err)
	}
	// The same signature under another scheme's name is not v1.
	if err := webhook.Verify(key, body, vectorHeader("v1a"+strings.TrimPrefix(vectorSignature, "v1")), at(vectorTimestamp)); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify(v1a,…) = %v, want ErrBadSignature", err)
	}
}

func TestVerify(t *testing.T) {
	key, body := vectorKey(t), []byte(vectorBody)
	now := int64(vectorTimestamp)
	with := func(f func(h http.Header)) http.Header {
		h := vectorHeader(vectorSignature)
		f(h)
		return h
	}
	// signed returns headers signed for id at unix, with the delivery and
	// subscription headers given.
	signed := func(id string, unix int64, delivery, subscription string) http.Header {
		h := http.Header{}
		h.Set(webhook.IDHeader, id)
		h.Set(webhook.TimestampHeader, strconv.FormatInt(unix, 10))
		h.Set(webhook.StandardSignatureHeader, webhook.Sign(key, id, time.Unix(unix, 0), body))
		if delivery != "" {
			h.Set(webhook.DeliveryHeader, delivery)
		}
		if subscription != "" {
			h.Set(webhook.SubscriptionHeader, subscription)
		}
		return h
	}
	deliveryID := webhook.MessageID("orders", "account-1/3")
	tolerance := func(d time.Duration) func(*webhook.VerifyOptions) {
		return func(o *webhook.VerifyOptions) { o.Tolerance = d }
	}
	cases := []struct {
		name   string
		key    []byte
		body   []byte
		header http.Header
		opts   []func(*webhook.VerifyOptions)
		ok     bool
	}{
		{"valid", key, body, vectorHeader(vectorSignature), nil, true},
		{"tampered body", key, []byte(`{"test": 2432232315}`), vectorHeader(vectorSignature), nil, false},
		{"other key", []byte("another key of enough bytes"), body, vectorHeader(vectorSignature), nil, false},
		{"empty key", nil, body, vectorHeader(vectorSignature), nil, false},
		{"no id", key, body, with(func(h http.Header) { h.Del(webhook.IDHeader) }), nil, false},
		{"wrong id", key, body, with(func(h http.Header) { h.Set(webhook.IDHeader, "msg_someone-else") }), nil, false},
		{"id with a dot", key, body, signed("msg.1", now, "", ""), nil, false},
		{"no timestamp", key, body, with(func(h http.Header) { h.Del(webhook.TimestampHeader) }), nil, false},
		{"timestamp not a number", key, body, with(func(h http.Header) { h.Set(webhook.TimestampHeader, "2021-02-25T15:02:10Z") }), nil, false},
		{"timestamp changed", key, body, with(func(h http.Header) { h.Set(webhook.TimestampHeader, strconv.FormatInt(now+1, 10)) }), nil, false},
		{"no signature", key, body, with(func(h http.Header) { h.Del(webhook.StandardSignatureHeader) }), nil, false},
		{"signature not base64", key, body, with(func(h http.Header) { h.Set(webhook.StandardSignatureHeader, "v1,***") }), nil, false},
		{"signature without version", key, body, with(func(h http.Header) {
			h.Set(webhook.StandardSignatureHeader, strings.TrimPrefix(vectorSignature, "v1,"))
		}), nil, false},
		{"at the default tolerance, old", key, body, signed("msg_a", now-300, "", ""), nil, true},
		{"past the default tolerance, old", key, body, signed("msg_a", now-301, "", ""), nil, false},
		{"at the default tolerance, ahead", key, body, signed("msg_a", now+300, "", ""), nil, true},
		{"past the default tolerance, ahead", key, body, signed("msg_a", now+301, "", ""), nil, false},
		{"a replay a day later", key, body, signed("msg_a", now-86400, "", ""), nil, false},
		{"within a wider tolerance", key, body, signed("msg_a", now-3599, "", ""), []func(*webhook.VerifyOptions){tolerance(time.Hour)}, true},
		{"past a narrower tolerance", key, body, signed("msg_a", now-11, "", ""), []func(*webhook.VerifyOptions){tolerance(10 * time.Second)}, false},
		{"negative tolerance", key, body, signed("msg_a", now, "", ""), []func(*webhook.VerifyOptions){tolerance(-time.Second)}, false},
		{"id of the delivery headers", key, body, signed(deliveryID, now, "account-1/3", "orders"), nil, true},
		{"delivery header changed", key, body, with2(signed(deliveryID, now, "account-1/3", "orders"), webhook.DeliveryHeader, "account-1/4"), nil, false},
		{"subscription header changed", key, body, with2(signed(deliveryID, now, "account-1/3", "orders"), webhook.SubscriptionHeader, "billing"), nil, false},
		{"subscription header removed", key, body, with2(signed(deliveryID, now, "account-1/3", "orders"), webhook.SubscriptionHeader, ""), nil, false},
		{"id of another delivery", key, body, signed(webhook.MessageID("orders", "account-1/4"), now, "account-1/3", "orders"), nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]func(*webhook.VerifyOptions){at(now)}, tc.opts...)
			err := webhook.Verify(tc.key, tc.body, tc.header, opts...)
			if tc.ok && err != nil {
				t.Errorf("Verify = %v, want nil", err)
			}
			if !tc.ok && !errors.Is(err, webhook.ErrBadSignature) {
				t.Errorf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

// with2 returns h with header k set to v (deleted when v is "").
func with2(h http.Header, k, v string) http.Header {
	if v == "" {
		h.Del(k)
	} else {
		h.Set(k, v)
	}
	return h
}

func TestParseSecret(t *testing.T) {
	key := vectorKey(t)
	if len(key) != 24 {
		t.Fatalf("the vector's key is %d bytes, want 24", len(key))
	}
	if got := webhook.FormatSecret(key); got != vectorSecret {
		t.Errorf("FormatSecret(ParseSecret(vector)) = %s, want %s", got, vectorSecret)
	}
	raw, err := webhook.ParseSecret("plain s3cret")
	if err != nil || string(raw) != "plain s3cret" {
		t.Errorf("ParseSecret(raw) = %q, %v; want its bytes", raw, err)
	}
	if back, err := webhook.ParseSecret(webhook.FormatSecret(raw)); err == nil {
		t.Errorf("ParseSecret(FormatSecret of a 12-byte key) = %q, want an error (under %d bytes)", back, webhook.MinSecretBytes)
	}
	for name, s := range map[string]string{
		"not base64": "whsec_not base64!",
		"too short":  "whsec_" + "c2hvcnQ=",
		"too long":   webhook.FormatSecret(make([]byte, webhook.MaxSecretBytes+1)),
		"empty key":  "whsec_",
	} {
		if _, err := webhook.ParseSecret(s); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("ParseSecret(%s) = %v, want ErrBadSecret", name, err)
		} else if strings.Contains(err.Error(), strings.TrimPrefix(s, "whsec_")) && len(s) > 6 {
			t.Errorf("ParseSecret(%s): the error %q quotes the secret", name, err)
		}
	}
}

func TestHandlerSignsStandardWebhooks(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusInternalServerError})
	key := vectorKey(t)
	h := newHandler(t, webhook.Config{URL: rec.srv.URL, Secret: key, Subscription: "orders"})
	clock := time.Unix(1_800_000_000, 0)
	webhook.SetClock(h, func() time.Time { return clock })
	ctx := context.Background()

	// Two attempts of one delivery, a minute apart.
	_ = h.Handle(ctx, commit("account-1", 3))
	clock = clock.Add(time.Minute)
	_ = h.Handle(ctx, commit("account-1", 3))
	// Other deliveries.
	_ = h.Handle(ctx, commit("account-1", 4))
	_ = h.HandleBatch(ctx, []store.Commit{commit("account-1", 3), commit("account-1", 4)})
	reqs := rec.requests()
	if len(reqs) != 4 {
		t.Fatalf("server got %d requests, want 4", len(reqs))
	}
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.Header.Get(webhook.IDHeader)
		if want := webhook.MessageID("orders", r.Header.Get(webhook.DeliveryHeader)); ids[i] != want {
			t.Errorf("request %d: id %q, want MessageID of its delivery %q", i, ids[i], want)
		}
		if strings.Contains(ids[i], ".") || !strings.HasPrefix(ids[i], "msg_") {
			t.Errorf("request %d: id %q, want msg_ and no dot", i, ids[i])
		}
		if err := webhook.Verify(key, r.Body, r.Header, at(clock.Unix())); err != nil {
			t.Errorf("request %d: Verify = %v", i, err)
		}
		if _, ok := r.Header[webhook.SignatureHeader]; ok {
			t.Errorf("request %d: the deprecated %s is sent without LegacySignature", i, webhook.SignatureHeader)
		}
	}
	if ids[0] != ids[1] {
		t.Errorf("two attempts of one delivery: ids %q and %q, want the same", ids[0], ids[1])
	}
	if ids[1] == ids[2] || ids[2] == ids[3] || ids[0] == ids[3] {
		t.Errorf("ids of different deliveries are not all different: %q", ids)
	}
	ts0, ts1 := reqs[0].Header.Get(webhook.TimestampHeader), reqs[1].Header.Get(webhook.TimestampHeader)
	if ts0 != "1800000000" || ts1 != "1800000060" {
		t.Errorf("timestamps %s, %s; want the attempts' times 1800000000, 1800000060", ts0, ts1)
	}
	// The first attempt, replayed after the tolerance, is refused.
	if err := webhook.Verify(key, reqs[0].Body, reqs[0].Header, at(clock.Unix()+webhook.DefaultTolerance.Milliseconds()/1000)); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("the first attempt replayed 6 minutes later: Verify = %v, want ErrBadSignature", err)
	}

	// The same delivery for another subscription has another id.
	other := newHandler(t, webhook.Config{URL: rec.srv.URL, Secret: key, Subscription: "billing"})
	_ = other.Handle(ctx, commit("account-1", 3))
	reqs = rec.requests()
	if got := reqs[len(reqs)-1].Header.Get(webhook.IDHeader); got == ids[0] {
		t.Errorf("another subscription's delivery has the same id %q", got)
	}
}

func TestHandlerWithoutSecretSendsIDAndTimestamp(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusOK})
	h := newHandler(t, webhook.Config{URL: rec.srv.URL})
	if err := h.Handle(context.Background(), commit("a", 0)); err != nil {
		t.Fatal(err)
	}
	r := rec.only(t)
	if r.Header.Get(webhook.IDHeader) != webhook.MessageID("", "a/0") || r.Header.Get(webhook.TimestampHeader) == "" {
		t.Errorf("id %q, timestamp %q; want the delivery's id and a timestamp", r.Header.Get(webhook.IDHeader), r.Header.Get(webhook.TimestampHeader))
	}
	if v, ok := r.Header[webhook.StandardSignatureHeader]; ok {
		t.Errorf("signature %q without a secret", v)
	}
}

func TestLegacySignatureOnlyWhenAsked(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusOK})
	key := []byte("legacy receiver's secret")
	h := newHandler(t, webhook.Config{URL: rec.srv.URL, Secret: key, LegacySignature: true})
	if err := h.Handle(context.Background(), commit("a", 0)); err != nil {
		t.Fatal(err)
	}
	r := rec.only(t)
	if err := webhook.VerifyLegacy(key, r.Body, r.Header.Get(webhook.SignatureHeader)); err != nil {
		t.Errorf("VerifyLegacy with LegacySignature: %v", err)
	}
	if err := webhook.Verify(key, r.Body, r.Header); err != nil {
		t.Errorf("Verify with LegacySignature: %v", err)
	}
}

func TestInsecureURL(t *testing.T) {
	cases := []struct {
		url           string
		allowInsecure bool
		ok            bool
	}{
		{"http://example.com/hook", false, false},
		{"http://10.0.0.7:8080/hook", false, false},
		{"http://localhost.example.com/hook", false, false},
		{"http://127.0.0.1.nip.io/hook", false, false},
		{"http://example.com/hook", true, true},
		{"https://example.com/hook", false, true},
		{"http://127.0.0.1:8080/hook", false, true},
		{"http://127.9.9.9/hook", false, true},
		{"http://localhost/hook", false, true},
		{"http://LOCALHOST./hook", false, true},
		{"http://receiver.localhost:9000/hook", false, true},
		{"http://[::1]:8080/hook", false, true},
	}
	for _, tc := range cases {
		_, err := webhook.New(webhook.Config{URL: tc.url, Secret: []byte("k"), AllowInsecure: tc.allowInsecure})
		switch {
		case tc.ok && err != nil:
			t.Errorf("New(%s, AllowInsecure %v) = %v, want nil", tc.url, tc.allowInsecure, err)
		case !tc.ok && (!errors.Is(err, webhook.ErrInvalidConfig) || !strings.Contains(err.Error(), "URL: plain http")):
			t.Errorf("New(%s, AllowInsecure %v) = %v, want ErrInvalidConfig about URL: plain http", tc.url, tc.allowInsecure, err)
		}
	}
}

func TestStandardHeadersReserved(t *testing.T) {
	for _, k := range []string{"webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE"} {
		_, err := webhook.New(webhook.Config{URL: "https://example.com", Header: http.Header{k: {"v"}}})
		if !errors.Is(err, webhook.ErrInvalidConfig) {
			t.Errorf("New with Header %s = %v, want ErrInvalidConfig", k, err)
		}
	}
}

func TestParseSecrets(t *testing.T) {
	other := webhook.FormatSecret([]byte("another key of 24 bytes!"))
	cases := []struct {
		in   string
		keys int
		bad  string // the error's end; "" for none
	}{
		{"", 1, ""},
		{"raw", 1, ""},
		{"a raw secret with spaces", 1, ""},
		{vectorSecret, 1, ""},
		{vectorSecret + " " + other, 2, ""},
		{"  " + vectorSecret + "   " + other + " ", 2, ""},
		// Not a list: one whsec_ secret, which is not base64.
		{vectorSecret + " raw", 0, `(with its "=" padding)`},
		{vectorSecret + " whsec_c2hvcnQ=", 0, "want 24 to 64 (secret 2 of 2)"},
	}
	for _, c := range cases {
		keys, err := webhook.ParseSecrets(c.in)
		switch {
		case c.bad == "" && (err != nil || len(keys) != c.keys):
			t.Errorf("ParseSecrets(%q) = %d keys, %v; want %d", c.in, len(keys), err, c.keys)
		case c.bad != "" && (!errors.Is(err, webhook.ErrBadSecret) || !strings.HasSuffix(err.Error(), c.bad)):
			t.Errorf("ParseSecrets(%q) = %v, want ErrBadSecret ending %q", c.in, err, c.bad)
		}
	}
}

// TestHandlerSignsWithEveryKeyOfARotation: with OtherSecrets, a receiver
// holding either key verifies the request, and one holding neither does
// not.
func TestHandlerSignsWithEveryKeyOfARotation(t *testing.T) {
	rec := newRecorder(t, answer{Status: http.StatusOK})
	newKey, oldKey := []byte("the new key, 24 bytes ok"), vectorKey(t)
	h := newHandler(t, webhook.Config{URL: rec.srv.URL, Secret: newKey, OtherSecrets: [][]byte{oldKey}})
	if err := h.Handle(context.Background(), commit("a", 0)); err != nil {
		t.Fatal(err)
	}
	r := rec.only(t)
	if n := len(strings.Fields(r.Header.Get(webhook.StandardSignatureHeader))); n != 2 {
		t.Errorf("%d signatures, want 2: %q", n, r.Header.Get(webhook.StandardSignatureHeader))
	}
	for name, key := range map[string][]byte{"new": newKey, "old": oldKey} {
		if err := webhook.Verify(key, r.Body, r.Header); err != nil {
			t.Errorf("a receiver with the %s key: %v", name, err)
		}
	}
	if err := webhook.Verify([]byte("neither of the two keys!"), r.Body, r.Header); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("a receiver with another key: %v, want ErrBadSignature", err)
	}
}
