package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// LoadFile reads a configuration file: one JSON object with the fields of
// Config (table, checkpointTable, listen, …, durations as strings such as
// "30s") and a subscriptions array of SubscriptionConfig, each with its
// handler object. For example:
//
//	{
//	  "table": "commits",
//	  "subscriptions": [
//	    {"name": "orders", "policy": "stop",
//	     "handler": {"type": "webhook", "url": "https://orders.example.com/hook",
//	                 "secretEnv": "ORDERS_WEBHOOK_SECRET", "timeout": "5s"}},
//	    {"name": "audit", "source": "stream", "handler": {"type": "stdout"}}
//	  ]
//	}
//
// A field the file does not know, a value of the wrong type, a secret
// (handler.secret: name a variable with secretEnv instead), a header that
// carries a credential (handler.header with Authorization, a cookie, an
// API key or token, or a "Bearer …" or "Basic …" value: name a variable
// with headerEnv instead) and anything after the object are errors. A
// setting the file writes counts as given, zero included: Run refuses
// "concurrency": 0 as it refuses --concurrency 0, rather than reading it as
// the default (leave the setting out for that). Every error is a *ConfigError with File set
// to path and Setting the field's path, e.g. subscriptions[1].handler.url.
// LoadFile only reads: it does not apply defaults nor judge values (Run
// does).
func LoadFile(path string) (Config, error) {
	cfg, _, err := loadFile(path)
	return cfg, err
}

// fileKeys are the settings a configuration file writes, by path
// ("buckets", "subscriptions[0].handler.timeout"), zero values included.
type fileKeys map[string]bool

// loadFile is LoadFile, also returning the settings the file writes.
func loadFile(path string) (Config, fileKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return Config{}, nil, &ConfigError{File: path, Reason: "cannot read the configuration file: " + err.Error()}
	}
	return parseFile(path, data)
}

// topForm and subForm decode one level at a time, so that an error names
// the array index and the field.
type topForm struct {
	Config
	Subscriptions []json.RawMessage `json:"subscriptions"`
}

type subForm struct {
	SubscriptionConfig
	Handler json.RawMessage `json:"handler"`
}

func parseFile(path string, data []byte) (Config, fileKeys, error) {
	var top topForm
	if err := decodeStrict(data, &top); err != nil {
		return Config{}, nil, fileErr(path, data, "", reflect.TypeFor[topForm](), err)
	}
	keys := fileKeys{}
	keys.add("", data)
	cfg := top.Config
	cfg.Subscriptions = nil
	for i, raw := range top.Subscriptions {
		at := fmt.Sprintf("subscriptions[%d]", i)
		var sf subForm
		if err := decodeStrict(raw, &sf); err != nil {
			return Config{}, nil, fileErr(path, data, at, reflect.TypeFor[subForm](), err)
		}
		keys.add(at+".", raw)
		sc := sf.SubscriptionConfig
		if len(sf.Handler) > 0 {
			if err := decodeStrict(sf.Handler, &sc.Handler); err != nil {
				return Config{}, nil, fileErr(path, data, at+".handler", reflect.TypeFor[HandlerConfig](), err)
			}
			keys.add(at+".handler.", sf.Handler)
		}
		if sc.Handler.Secret != "" {
			return Config{}, nil, &ConfigError{File: path, Setting: at + ".handler.secret",
				Reason: "a configuration file holds no secret: put it in an environment variable and name it with secretEnv"}
		}
		for _, k := range slices.Sorted(maps.Keys(sc.Handler.Header)) {
			if credentialHeader(k, sc.Handler.Header[k]) {
				return Config{}, nil, &ConfigError{File: path, Setting: at + ".handler.header", Value: strconv.Quote(k),
					Reason: "a configuration file holds no credential: put the value in an environment variable and name it with headerEnv"}
			}
		}
		cfg.Subscriptions = append(cfg.Subscriptions, sc)
	}
	return cfg, keys, nil
}

// add records the members of the JSON object obj (already decoded
// strictly) under prefix. A value that is not an object adds nothing.
func (k fileKeys) add(prefix string, obj []byte) {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return
	}
	for name := range m {
		k[prefix+name] = true
	}
}

// credentialHeader reports whether a header named name with value v
// carries a credential: by its name (Authorization, Proxy-Authorization,
// Cookie, or one naming a token, key, secret, password, session, signature
// or credential) or by its value (an HTTP authentication scheme such as
// "Bearer …" or "Basic …").
func credentialHeader(name, v string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"auth", "cookie", "token", "key", "secret", "passw", "session", "signature", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	switch strings.ToLower(scheme) {
	case "bearer", "basic", "digest", "token", "negotiate", "aws4-hmac-sha256":
		return true
	}
	return false
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// anything after the value.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

var errTrailing = errors.New("trailing data after the JSON object")

// fileErr turns a decoding error at path prefix at (of a value of type t)
// into a *ConfigError.
func fileErr(file string, data []byte, at string, t reflect.Type, err error) error {
	join := func(field string) string {
		switch {
		case at == "":
			return field
		case field == "":
			return at
		}
		return at + "." + field
	}
	var (
		syn *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		line, col := lineCol(data, syn.Offset)
		return &ConfigError{File: file, Setting: fmt.Sprintf("line %d column %d", line, col), Reason: "invalid JSON: " + syn.Error()}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &ConfigError{File: file, Setting: cmpOr(at, "the file"), Reason: "empty or truncated JSON"}
	case errors.Is(err, errTrailing):
		return &ConfigError{File: file, Setting: cmpOr(at, "the file"), Reason: err.Error()}
	case errors.As(err, &ute):
		field := ute.Field
		// The embedded struct's name is not in the path.
		for _, p := range []string{"Config.", "SubscriptionConfig."} {
			field = strings.TrimPrefix(field, p)
		}
		setting := cmpOr(join(field), "the file")
		if ute.Type == reflect.TypeFor[Duration]() {
			v := ute.Value
			if !strings.HasPrefix(v, `"`) {
				v = ""
			}
			return &ConfigError{File: file, Setting: setting, Value: v, Reason: "want a duration string such as \"30s\" or \"1m30s\""}
		}
		return &ConfigError{File: file, Setting: setting, Reason: fmt.Sprintf("want %s, got %s", describeType(ute.Type), ute.Value)}
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		reason := "unknown setting"
		if s := suggest(name, jsonNames(t)); s != "" {
			reason += fmt.Sprintf("; did you mean %q?", s)
		}
		return &ConfigError{File: file, Setting: join(name), Reason: reason}
	}
	return &ConfigError{File: file, Setting: cmpOr(at, "the file"), Reason: strings.TrimPrefix(msg, "json: ")}
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice:
		return "an array"
	case reflect.Bool:
		return "true or false"
	}
	return t.String()
}

func lineCol(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	// offset is just past the character at fault.
	col = max(int(offset)-bytes.LastIndexByte(before, '\n')-1, 1)
	return line, col
}

// jsonNames lists the JSON field names of struct type t, embedded structs'
// included.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonNames(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "-" && name != "" {
			out = append(out, name)
		}
	}
	return out
}

// suggest returns the name among known closest to name, if it is close
// enough to be a typo.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
