package daemon

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// knobCase is a value of one setting that the daemon refuses, however it
// is given.
type knobCase struct {
	flag  string // the setting, by its flag
	value string // as a flag or variable takes it
	json  string // as the file writes it
	shown string // the value as errors show it
	want  string // the reason, or its start
	// forms limits the forms tested ("flag", "env", "file"); all when
	// empty.
	forms []string
}

// knobCases refuse a value of every setting, in each form it can be given.
var knobCases = []knobCase{
	{flag: "table", value: "ab", json: `"ab"`, shown: `"ab"`, want: "want 3 to 255 characters"},
	{flag: "table", value: "", json: `""`, shown: `""`, want: "want a value", forms: []string{"flag", "file"}},
	{flag: "index", value: "my index", json: `"my index"`, shown: `"my index"`, want: "want only letters"},
	{flag: "buckets", value: "0", json: `0`, shown: "0", want: "want 1 to 256"},
	{flag: "buckets", value: "257", json: `257`, shown: "257", want: "want 1 to 256"},
	{flag: "endpoint", value: "ftp://x", json: `"ftp://x"`, shown: `"ftp://x"`, want: "want an http or https URL"},
	{flag: "checkpoint-table", value: "ab", json: `"ab"`, shown: `"ab"`, want: "want 3 to 255 characters"},
	{flag: "listen", value: "nonsense", json: `"nonsense"`, shown: `"nonsense"`, want: "want HOST:PORT"},
	{flag: "log-format", value: "xml", json: `"xml"`, shown: `"xml"`, want: "want json or text"},
	{flag: "log-level", value: "loud", json: `"loud"`, shown: `"loud"`, want: "want debug, info, warn or error"},
	{flag: "log-level", value: "", json: `""`, shown: `""`, want: "want a value", forms: []string{"flag", "file"}},
	{flag: "shutdown-timeout", value: "0s", json: `"0s"`, shown: "0s", want: "want 100ms or more"},
	{flag: "stuck-after", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "lease-duration", value: "0s", json: `"0s"`, shown: "0s", want: "want 1s or more"},
	{flag: "lease-renew", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration under half of"},
	{flag: "lease-renew", value: "15s", json: `"15s"`, shown: "15s", want: "want a positive duration under half of"},
	{flag: "balance-every", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "fail-after", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "aws-attempt-timeout", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "aws-call-timeout", value: "1s", json: `"1s"`, shown: "1s", want: "want a duration of at least awsAttemptTimeout"},
	{flag: "owner", value: "host\x1b]0;x\x07", json: `"host\u001b]0;x\u0007"`, shown: `"host\x1b]0;x\a"`, want: "contains a control character"},
	{flag: "source", value: "river", json: `"river"`, shown: `"river"`, want: "want index, stream or auto"},
	{flag: "start", value: "yesterday", json: `"yesterday"`, shown: `"yesterday"`, want: "want beginning, now, a commit id"},
	{flag: "policy", value: "retry", json: `"retry"`, shown: `"retry"`, want: "want park, stop or skip"},
	{flag: "handler", value: "pigeon", json: `"pigeon"`, shown: `"pigeon"`, want: "want webhook, stdout or go"},
	{flag: "webhook-url", value: "ftp://h/x", json: `"ftp://h/x"`, shown: `"ftp://h/x"`, want: "want an http or https URL"},
	{flag: "webhook-url", value: "http://example.com/hook", json: `"http://example.com/hook"`, shown: `"http://example.com/hook"`, want: "plain http to a host that is not a loopback one"},
	{flag: "webhook-timeout", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "webhook-batch", value: "0", json: `0`, shown: "0", want: "want 1 to 1000"},
	// A flag of its own is true or false; its variable and the file may
	// say something else.
	{flag: "webhook-allow-insecure", value: "maybe", shown: `"maybe"`, want: "want true or false", forms: []string{"env"}},
	{flag: "webhook-allow-insecure", json: `"yes"`, want: "want true or false", forms: []string{"file"}},
	{flag: "webhook-legacy-signature", value: "maybe", shown: `"maybe"`, want: "want true or false", forms: []string{"env"}},
	{flag: "webhook-legacy-signature", json: `1`, want: "want true or false", forms: []string{"file"}},
	{flag: "concurrency", value: "0", json: `0`, shown: "0", want: "want 1 to 1000"},
	{flag: "concurrency", value: "1001", json: `1001`, shown: "1001", want: "want 1 to 1000"},
	{flag: "checkpoint-interval", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "settle", value: "-1s", json: `"-1s"`, shown: "-1s", want: "want 0 (the default) or a positive duration"},
	{flag: "overlap", value: "-1s", json: `"-1s"`, shown: "-1s", want: "want 0 (the default) or a positive duration"},
	{flag: "stream-margin", value: "-1s", json: `"-1s"`, shown: "-1s", want: "want 0 (the default) or a positive duration"},
	{flag: "max-record-age", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "max-attempts", value: "-1", json: `-1`, shown: "-1", want: "want 0 (no limit) or more"},
	{flag: "max-elapsed", value: "-1s", json: `"-1s"`, shown: "-1s", want: "want 0 (no limit) or a positive duration"},
	{flag: "backoff-initial", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "backoff-max", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "handler-timeout", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "circuit-open-after", value: "0", json: `0`, shown: "0", want: "want 1 or more, or -1 (never open)"},
	{flag: "circuit-open-after", value: "-2", json: `-2`, shown: "-2", want: "want 1 or more, or -1 (never open)"},
	{flag: "corrupt", value: "stop", json: `"stop"`, shown: `"stop"`, want: "want park or skip"},
	{flag: "gap-timeout", value: "0s", json: `"0s"`, shown: "0s", want: "want a positive duration"},
	{flag: "gap-timeout", value: "-1s", json: `"-1s"`, shown: "-1s", want: "want a positive duration"},
}

// knobsElsewhere are settings this table leaves to other tests, and why.
var knobsElsewhere = map[string]string{
	"config":         "TestConfigInvalid: a missing or malformed file",
	"subscription":   "TestConfigInvalid: an empty or duplicate name",
	"region":         "any region name is passed to the SDK as it is",
	"webhook-secret": "TestWebhookSecretForms: a secret never shows in an error",
}

// TestConfigEveryKnobThreeForms gives each refused value as a flag, as an
// environment variable and in the configuration file, and checks that
// each is refused alike, naming the setting as it was written.
func TestConfigEveryKnobThreeForms(t *testing.T) {
	covered := map[string]bool{}
	for _, c := range knobCases {
		covered[c.flag] = true
	}
	for _, s := range settings {
		if !covered[s.flag] && knobsElsewhere[s.flag] == "" {
			t.Errorf("setting --%s: no refused value in knobCases", s.flag)
		}
	}
	for _, c := range knobCases {
		s := settingByFlag(c.flag)
		if s == nil {
			t.Fatalf("knobCases: no setting --%s", c.flag)
		}
		forms := c.forms
		if len(forms) == 0 {
			forms = []string{"flag", "env", "file"}
		}
		for _, form := range forms {
			t.Run(c.flag+"="+c.value+"/"+form, func(t *testing.T) {
				args, env, file, name, sep := knobInput(t, s, c, form)
				_, err := resolveArgs(t, args, env, file, Options{})
				var ce *ConfigError
				if !errors.As(err, &ce) || ExitCode(err) != ExitConfig {
					t.Fatalf("err = %v, want a *ConfigError", err)
				}
				want := name
				if c.shown != "" {
					want += sep + c.shown
				}
				want += ": " + c.want
				if form == "file" {
					if ce.File == "" {
						t.Fatalf("%v: the file is not named", err)
					}
					want = ce.File + ": " + want
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\nwant it to contain %q", err, want)
				}
			})
		}
	}
}

// knobInput returns the command line, environment and file that give c's
// value in form, with a webhook subscription to apply it to, and the name
// and separator the error should show.
func knobInput(t *testing.T, s *setting, c knobCase, form string) (args []string, env map[string]string, file, name, sep string) {
	t.Helper()
	base := map[string]string{"subscription": "s", "handler": "webhook", "webhook-url": "https://h/hook"}
	env = map[string]string{}
	switch form {
	case "flag", "env":
		for _, f := range []string{"subscription", "handler", "webhook-url"} {
			if f != c.flag {
				args = append(args, "--"+f, base[f])
			}
		}
		if form == "flag" {
			return append(args, "--"+c.flag+"="+c.value), env, "", "--" + c.flag, " "
		}
		env[s.env()] = c.value
		return args, env, "", s.env(), "="
	}
	top := map[string]any{}
	sub := map[string]any{"name": "s"}
	handler := map[string]any{"type": "webhook", "url": "https://h/hook"}
	raw := json.RawMessage(c.json)
	switch {
	case s.top != nil:
		top[s.path] = raw
		name = s.path
	case strings.HasPrefix(s.path, "handler."):
		handler[strings.TrimPrefix(s.path, "handler.")] = raw
		name = "subscriptions[0]." + s.path
	default:
		sub[s.path] = raw
		name = "subscriptions[0]." + s.path
	}
	sub["handler"] = handler
	top["subscriptions"] = []any{sub}
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--config", "FILE"}, env, string(b), name, " "
}

// TestConfigFileZeroIsNotDefault: a setting the file writes as zero is
// judged as the same flag would be; left out, it is the default.
func TestConfigFileZeroIsNotDefault(t *testing.T) {
	const sub = `{"name":"s","handler":{"type":"stdout"}}`
	p, err := resolveArgs(t, []string{"--config", "FILE"}, nil, `{"subscriptions":[`+sub+`]}`, Options{})
	if err != nil {
		t.Fatalf("a file without the settings: %v", err)
	}
	if p.subs[0].sub.Concurrency != DefaultConcurrency || p.cfg.LeaseDuration != Duration(DefaultLeaseDuration) {
		t.Errorf("left out: concurrency %d, leaseDuration %v; want the defaults", p.subs[0].sub.Concurrency, p.cfg.LeaseDuration)
	}
	for _, file := range []string{
		`{"subscriptions":[{"name":"s","concurrency":0,"handler":{"type":"stdout"}}]}`,
		`{"leaseDuration":"0s","subscriptions":[` + sub + `]}`,
		`{"subscriptions":[{"name":"s","handler":{"type":"webhook","url":"https://h","timeout":"0s"}}]}`,
	} {
		if _, err := resolveArgs(t, []string{"--config", "FILE"}, nil, file, Options{}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("file %s: err = %v, want it refused", file, err)
		}
	}
}

// TestConfigLeaseRenewNamesTheSettingsAsWritten: the error about a renewal
// too close to the lease names both settings as the operator wrote them.
func TestConfigLeaseRenewNamesTheSettingsAsWritten(t *testing.T) {
	stdout := []string{"--subscription", "s", "--handler", "stdout"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{"flags", append([]string{"--lease-duration", "3s", "--lease-renew", "2s"}, stdout...), nil, "",
			"--lease-renew 2s: want a positive duration under half of --lease-duration (3s)"},
		{"variables", stdout, map[string]string{"EVENTSTORE_LEASE_DURATION": "3s", "EVENTSTORE_LEASE_RENEW": "2s"}, "",
			"EVENTSTORE_LEASE_RENEW=2s: want a positive duration under half of EVENTSTORE_LEASE_DURATION (3s)"},
		{"file", append([]string{"--config", "FILE"}, stdout...), nil, `{"leaseDuration":"3s","leaseRenew":"2s"}`,
			"FILE: leaseRenew 2s: want a positive duration under half of leaseDuration (3s)"},
		{"flag over the file's lease", append([]string{"--config", "FILE", "--lease-renew", "2s"}, stdout...), nil, `{"leaseDuration":"3s"}`,
			"--lease-renew 2s: want a positive duration under half of leaseDuration in FILE (3s)"},
		{"the default lease", append([]string{"--lease-renew", "15s"}, stdout...), nil, "",
			"--lease-renew 15s: want a positive duration under half of --lease-duration (20s, its default)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolveArgs(t, c.args, c.env, c.file, Options{})
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			want := c.want
			if strings.Contains(want, "FILE") {
				path := writeFilePathOf(ce, err)
				want = strings.ReplaceAll(want, "FILE", path)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nwant it to contain %q", err, want)
			}
		})
	}
}

// writeFilePathOf returns the configuration file an error names, in its
// File or in its reason.
func writeFilePathOf(ce *ConfigError, err error) string {
	if ce.File != "" {
		return ce.File
	}
	msg := err.Error()
	if i := strings.Index(msg, " in "); i >= 0 {
		rest := msg[i+len(" in "):]
		if j := strings.Index(rest, " ("); j >= 0 {
			return rest[:j]
		}
	}
	return "?"
}

// TestConfigFileRefusesInlineCredentials: a header that carries a
// credential is refused in the file (headerEnv names a variable instead);
// other headers are not.
func TestConfigFileRefusesInlineCredentials(t *testing.T) {
	hook := func(header string) string {
		return `{"subscriptions":[{"name":"s","handler":{"type":"webhook","url":"https://h","header":` + header + `}}]}`
	}
	for _, header := range []string{
		`{"Authorization":"Bearer abc.def"}`,
		`{"authorization":"opaque"}`,
		`{"X-Api-Key":"k-123"}`,
		`{"Cookie":"session=1"}`,
		`{"X-Auth-Token":"t"}`,
		`{"X-Custom":"Bearer abc"}`,
		`{"X-Custom":"basic dXNlcjpwdw=="}`,
	} {
		_, err := resolveArgs(t, []string{"--config", "FILE"}, nil, hook(header), Options{})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Setting != "subscriptions[0].handler.header" || !strings.Contains(ce.Reason, "headerEnv") {
			t.Errorf("header %s: err = %v, want it refused at subscriptions[0].handler.header, pointing at headerEnv", header, err)
			continue
		}
		for _, secret := range []string{"abc.def", "opaque", "k-123", "session=1", "dXNlcjpwdw=="} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("header %s: the error %q shows the value", header, err)
			}
		}
	}
	const allowed = `{"subscriptions":[{"name":"s","handler":{"type":"webhook","url":"https://h",` +
		`"header":{"X-Tenant":"t1"},"headerEnv":{"Authorization":"AUTH"}}}]}`
	p, err := resolveArgs(t, []string{"--config", "FILE"}, map[string]string{"AUTH": "Bearer abc"}, allowed, Options{})
	if err != nil {
		t.Fatalf("X-Tenant inline, Authorization from headerEnv: %v", err)
	}
	if got := p.subs[0].headerNames; strings.Join(got, ",") != "Authorization,X-Tenant" {
		t.Errorf("headers %q, want Authorization and X-Tenant", got)
	}
}

// TestWebhookSecretForms: the daemon takes a whsec_ secret (its key is
// the base64 after the prefix) or a raw one, and refuses a malformed
// whsec_ one without showing it.
func TestWebhookSecretForms(t *testing.T) {
	hook := []string{"--subscription", "s", "--handler", "webhook", "--webhook-url", "https://h/hook"}
	for _, secret := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "a raw secret",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_" + strings.Repeat("A", 32)} {
		if _, err := resolveArgs(t, hook, map[string]string{"EVENTSTORE_WEBHOOK_SECRET": secret}, "", Options{}); err != nil {
			t.Errorf("secret %q: %v", secret, err)
		}
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		file string
		want string
	}{
		{append(hook, "--webhook-secret", "whsec_not!base64"), nil, "", "--webhook-secret: bad secret"},
		{hook, map[string]string{"EVENTSTORE_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "", "EVENTSTORE_WEBHOOK_SECRET: bad secret: the key is 5 bytes, want 24 to 64"},
		{hook, map[string]string{"EVENTSTORE_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2hvcnQ="}, "", "EVENTSTORE_WEBHOOK_SECRET: bad secret: the key is 5 bytes, want 24 to 64 (secret 2 of 2)"},
		{[]string{"--config", "FILE"}, map[string]string{"HOOK_SECRET": "whsec_c2hvcnQ="}, `{"subscriptions":[{"name":"s","handler":{"type":"webhook","url":"https://h","secretEnv":"HOOK_SECRET"}}]}`, `subscriptions[0].handler.secretEnv "HOOK_SECRET": bad secret`},
	} {
		_, err := resolveArgs(t, c.args, c.env, c.file, Options{})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want it to contain %q", err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "not!base64") || strings.Contains(err.Error(), "c2hvcnQ")) {
			t.Errorf("the error %q shows the secret", err)
		}
	}
}

// TestWebhookInsecureURL: plain http to a host that is not a loopback one
// is refused unless allowed, in each form; loopback http is fine.
func TestWebhookInsecureURL(t *testing.T) {
	base := []string{"--subscription", "s", "--handler", "webhook"}
	ok := func(args []string, env map[string]string, file string) {
		t.Helper()
		p, err := resolveArgs(t, args, env, file, Options{})
		if err != nil {
			t.Errorf("%q %v %s: %v", args, env, file, err)
			return
		}
		if p.subs[0].sub.Handler == nil {
			t.Errorf("%q: no webhook handler", args)
		}
	}
	ok(append(base, "--webhook-url", "http://127.0.0.1:8080/hook"), nil, "")
	ok(append(base, "--webhook-url", "http://localhost/hook"), nil, "")
	ok(append(base, "--webhook-url", "http://example.com/hook", "--webhook-allow-insecure"), nil, "")
	ok(append(base, "--webhook-url", "http://example.com/hook"), map[string]string{"EVENTSTORE_WEBHOOK_ALLOW_INSECURE": "true"}, "")
	ok([]string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"s","handler":{"type":"webhook","url":"http://example.com/hook","allowInsecure":true}}]}`)

	_, err := resolveArgs(t, append(base, "--webhook-url", "http://example.com/hook?token=QUERY-TOKEN"), nil, "", Options{})
	if err == nil || !strings.Contains(err.Error(), "--webhook-allow-insecure") || strings.Contains(err.Error(), "QUERY-TOKEN") {
		t.Errorf("err = %v, want it refused, naming --webhook-allow-insecure, without the query", err)
	}
	_, err = resolveArgs(t, []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"s","handler":{"type":"webhook","url":"http://example.com/hook"}}]}`, Options{})
	if err == nil || !strings.Contains(err.Error(), "subscriptions[0].handler.allowInsecure") {
		t.Errorf("err = %v, want it refused, naming subscriptions[0].handler.allowInsecure", err)
	}
}

// TestWebhookLegacySignatureSetting: the deprecated header is sent only
// when the setting asks for it, and the Standard Webhooks one always, with
// a signature for each secret of a rotation.
func TestWebhookLegacySignatureSetting(t *testing.T) {
	type request struct {
		header http.Header
		body   []byte
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{r.Header.Clone(), body}
	}))
	defer srv.Close()
	// A rotation: the new secret and the old one, both sign.
	newKey, oldKey := []byte("the new key, 24 bytes ok"), []byte("the old key, 24 bytes ok")
	env := map[string]string{"EVENTSTORE_WEBHOOK_SECRET": webhook.FormatSecret(newKey) + " " + webhook.FormatSecret(oldKey)}
	for _, legacy := range []bool{false, true} {
		args := []string{"--subscription", "s", "--handler", "webhook", "--webhook-url", srv.URL}
		if legacy {
			args = append(args, "--webhook-legacy-signature")
		}
		p, err := resolveArgs(t, args, env, "", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.subs[0].sub.Handler.Handle(t.Context(), subscribe.Commit{AggregateID: "a", Events: []byte(`[1]`)}); err != nil {
			t.Fatal(err)
		}
		req := <-got
		h := req.header
		for _, key := range [][]byte{newKey, oldKey} {
			if err := webhook.Verify(key, req.body, h); err != nil {
				t.Errorf("legacy %v: Verify with %q: %v", legacy, key, err)
			}
		}
		const old = "X-Eventstore-Signature" // deprecated
		if (h.Get(old) != "") != legacy || h.Get(webhook.StandardSignatureHeader) == "" {
			t.Errorf("legacy %v: %s %q, %s %q", legacy, old, h.Get(old),
				webhook.StandardSignatureHeader, h.Get(webhook.StandardSignatureHeader))
		}
		if h.Get(webhook.IDHeader) != webhook.MessageID("s", "a/0") {
			t.Errorf("legacy %v: id %q, want the delivery's of subscription s", legacy, h.Get(webhook.IDHeader))
		}
	}
}
