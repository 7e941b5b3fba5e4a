package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// alertRules is the Prometheus rule file of the daemon's alerts.
const alertRules = "prometheus/alerts.yml"

// alertedMetrics are the metrics an alert must watch, one at least each:
// the daemon's view of stuck and unready subscriptions, leases lost and
// failing renewals, parked commits and old checkpoints, calls failing for
// long, refused credentials, units lost through failures, the lag, the
// handler's circuit, commits parked now, corrupt items and unfilled gaps.
var alertedMetrics = []string{
	"eventstore_daemon_subscription_stuck",
	"eventstore_daemon_subscription_ready",
	"eventstore_subscription_lease_losses_total",
	"eventstore_subscription_lease_renewal_failures_total",
	"eventstore_subscription_parked_commits_total",
	"eventstore_daemon_checkpoint_age_seconds",
	"eventstore_daemon_subscription_failing_seconds",
	"eventstore_daemon_subscription_auth_failed",
	"eventstore_daemon_subscription_units_lost",
	"eventstore_daemon_subscription_lag_seconds",
	"eventstore_subscription_circuit_open",
	"eventstore_subscription_parked_commits",
	"eventstore_subscription_corrupt_items_total",
	"eventstore_subscription_gaps_unfilled_total",
}

// Prometheus rule files, in the fields the alerts use. Decoding rejects
// any other field.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string      `json:"name"`
	Interval string      `json:"interval"`
	Rules    []alertRule `json:"rules"`
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// loadRules reads and decodes a rule file.
func loadRules(path string) (*ruleFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeRules(data)
}

func decodeRules(data []byte) (*ruleFile, error) {
	doc, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	// Through JSON, to decode strictly into the typed form.
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a rule file of the expected shape: %w", err)
	}
	return &f, nil
}

// promDuration is Prometheus' duration syntax (units from the largest down,
// each at most once).
var promDuration = regexp.MustCompile(`^([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$`)

var (
	alertName     = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	templateLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	severities    = []string{"critical", "warning"}
)

// ruleProblems lists what is wrong with a rule file on its own: its shape,
// names, durations, labels, annotations, and expressions that do not scan
// or name no metric.
func ruleProblems(f *ruleFile) []string {
	var out []string
	if len(f.Groups) == 0 {
		out = append(out, "no groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			out = append(out, fmt.Sprintf("group %q: want a unique name", g.Name))
		}
		groups[g.Name] = true
		if g.Interval != "" && !promDuration.MatchString(g.Interval) {
			out = append(out, fmt.Sprintf("group %s: interval %q is not a duration", g.Name, g.Interval))
		}
		if len(g.Rules) == 0 {
			out = append(out, fmt.Sprintf("group %s: no rules", g.Name))
		}
		for _, r := range g.Rules {
			where := fmt.Sprintf("alert %q", r.Alert)
			if !alertName.MatchString(r.Alert) || alerts[r.Alert] {
				out = append(out, where+": want a unique CamelCase name")
			}
			alerts[r.Alert] = true
			if r.For != "" && !promDuration.MatchString(r.For) {
				out = append(out, fmt.Sprintf("%s: for %q is not a duration", where, r.For))
			}
			if !slices.Contains(severities, r.Labels["severity"]) {
				out = append(out, fmt.Sprintf("%s: severity %q, want one of %q", where, r.Labels["severity"], severities))
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					out = append(out, fmt.Sprintf("%s: no %s annotation", where, a))
				}
			}
			for name, text := range r.Annotations {
				if strings.Count(text, "{{") != strings.Count(text, "}}") {
					out = append(out, fmt.Sprintf("%s: annotation %s: unbalanced {{ }}", where, name))
				}
			}
			q, err := scanPromQL(r.Expr)
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("%s: expr: %v", where, err))
			case len(q.metrics) == 0:
				out = append(out, where+": expr names no metric")
			}
		}
	}
	return out
}

// allRules returns every rule of every group.
func (f *ruleFile) allRules() []alertRule {
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"instance", "job"}

// alertProblems checks the rules against what a daemon serves: every
// metric an expression names is a series name on /metrics (a histogram's
// _bucket, _sum and _count included), and every label it matches, groups
// by or shows in an annotation is a label of one of those metrics or a
// target label. After an aggregation, annotations may show only the labels
// it keeps (by).
func alertProblems(f *ruleFile, served map[string]map[string]bool) []string {
	var out []string
	for _, r := range f.allRules() {
		where := fmt.Sprintf("alert %s", r.Alert)
		q, err := scanPromQL(r.Expr)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		have := map[string]bool{}
		for _, l := range targetLabels {
			have[l] = true
		}
		for _, m := range q.metrics {
			labels, ok := served[m]
			if !ok {
				out = append(out, fmt.Sprintf("%s: metric %s is not on the daemon's /metrics", where, m))
			}
			for l := range labels {
				have[l] = true
			}
		}
		for _, l := range q.labels {
			if !have[l] {
				out = append(out, fmt.Sprintf("%s: label %s is on none of %q", where, l, q.metrics))
			}
		}
		for name, text := range r.Annotations {
			for _, m := range templateLabel.FindAllStringSubmatch(text, -1) {
				l := m[1]
				switch {
				case q.aggregated && !slices.Contains(q.by, l):
					out = append(out, fmt.Sprintf("%s: annotation %s shows label %s, which the aggregation drops", where, name, l))
				case !have[l]:
					out = append(out, fmt.Sprintf("%s: annotation %s shows label %s, which is on none of %q", where, name, l, q.metrics))
				}
			}
		}
	}
	return out
}

// missingAlerts returns the metrics of alertedMetrics no rule watches.
func missingAlerts(f *ruleFile) []string {
	used := map[string]bool{}
	for _, r := range f.allRules() {
		q, _ := scanPromQL(r.Expr)
		for _, m := range q.metrics {
			used[m] = true
		}
	}
	var out []string
	for _, m := range alertedMetrics {
		if !used[m] {
			out = append(out, m)
		}
	}
	return out
}

// promQuery is what scanPromQL finds in an expression.
type promQuery struct {
	metrics []string // metric names of the selectors
	labels  []string // labels matched in selectors or named in by, without, on, ignoring, group_left, group_right
	by      []string // labels of by clauses
	// aggregated: the expression has an aggregation operator.
	aggregated bool
}

// PromQL words that are not metric names.
var (
	promAggregations = []string{"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group", "limitk", "limit_ratio"}
	promGroupings    = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	promKeywords     = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

// scanPromQL finds the metric names and labels of a PromQL expression: an
// identifier is a metric name unless it is a keyword, an aggregation, or a
// function (followed by "("); identifiers inside {…} and after the
// grouping keywords are labels. Strings, ranges […] and numbers are passed
// over. It is a scanner, not a parser: Prometheus itself (promtool, when
// installed) judges the syntax.
func scanPromQL(expr string) (promQuery, error) {
	var q promQuery
	metrics, labels, by := map[string]bool{}, map[string]bool{}, map[string]bool{}
	s := expr
	i := 0
	skipSpace := func() {
		for i < len(s) && strings.ContainsRune(" \t\r\n", rune(s[i])) {
			i++
		}
	}
	skipString := func() error {
		quote := s[i]
		for i++; i < len(s); i++ {
			switch {
			case s[i] == '\\' && quote != '`':
				i++
			case s[i] == quote:
				i++
				return nil
			}
		}
		return fmt.Errorf("unterminated string")
	}
	ident := func() string {
		start := i
		for i < len(s) && isIdentChar(s[i]) {
			i++
		}
		return s[start:i]
	}
	// labelList reads "(a, b)" into the label sets.
	labelList := func(into ...map[string]bool) error {
		i++ // (
		for {
			skipSpace()
			switch {
			case i >= len(s):
				return fmt.Errorf("unterminated label list")
			case s[i] == ')':
				i++
				return nil
			case s[i] == ',':
				i++
			case isIdentStart(s[i]):
				l := ident()
				for _, m := range into {
					m[l] = true
				}
			default:
				return fmt.Errorf("unexpected %q in a label list", s[i])
			}
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return q, err
			}
		case c == '{':
			i++
			for closed := false; !closed; {
				skipSpace()
				switch {
				case i >= len(s):
					return q, fmt.Errorf("unterminated {")
				case s[i] == '}':
					i++
					closed = true
				case s[i] == '"' || s[i] == '\'' || s[i] == '`':
					if err := skipString(); err != nil {
						return q, err
					}
				case isIdentStart(s[i]):
					labels[ident()] = true
				case strings.ContainsRune("=!~,", rune(s[i])):
					i++
				default:
					return q, fmt.Errorf("unexpected %q in a selector", s[i])
				}
			}
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return q, fmt.Errorf("unterminated [")
			}
			i += end + 1
		case '0' <= c && c <= '9' || c == '.':
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			word := ident()
			lower := strings.ToLower(word)
			skipSpace()
			next := byte(0)
			if i < len(s) {
				next = s[i]
			}
			switch {
			case slices.Contains(promGroupings, lower):
				if next == '(' {
					into := []map[string]bool{labels}
					if lower == "by" {
						into = append(into, by)
					}
					if err := labelList(into...); err != nil {
						return q, err
					}
				}
			case slices.Contains(promAggregations, lower):
				q.aggregated = true
			case slices.Contains(promKeywords, lower):
			case next == '(':
				// a function
			default:
				metrics[word] = true
			}
		default:
			i++ // operators, parentheses, commas, @
		}
	}
	q.metrics = sortedKeys(metrics)
	q.labels = sortedKeys(labels)
	q.by = sortedKeys(by)
	return q, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestAlertRulesAreWellFormed checks alerts.yml on its own: it parses, has
// the shape of a Prometheus rule file, its rules are complete, and an alert
// watches each of alertedMetrics. TestWorkerTemplateRunsTheDaemon checks
// its metrics against a running daemon.
func TestAlertRulesAreWellFormed(t *testing.T) {
	t.Parallel()
	f, err := loadRules(alertRules)
	if err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	for _, p := range ruleProblems(f) {
		t.Errorf("%s: %s", alertRules, p)
	}
	for _, m := range missingAlerts(f) {
		t.Errorf("%s: no alert watches %s", alertRules, m)
	}
}

// TestAlertRulesPassPromtool runs promtool check rules, when promtool is
// installed: Prometheus' own parser of rule files and PromQL.
func TestAlertRulesPassPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH")
	}
	out, err := exec.CommandContext(t.Context(), promtool, "check", "rules", alertRules).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// TestScanPromQL checks the scanner on the forms the alerts use and some
// they may come to use.
func TestScanPromQL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, expr          string
		metrics, labels, by []string
		aggregated          bool
	}{
		{name: "comparison", expr: `eventstore_daemon_subscription_stuck == 1`,
			metrics: []string{"eventstore_daemon_subscription_stuck"}},
		{name: "function and range", expr: `increase(eventstore_subscription_parked_commits_total[1h]) > 0`,
			metrics: []string{"eventstore_subscription_parked_commits_total"}},
		{name: "and", expr: "a_seconds > 900\n  and b == 1",
			metrics: []string{"a_seconds", "b"}},
		{name: "aggregation by", expr: `max by (subscription, unit) (rate(x_total{state="running", job=~"w.*"}[5m] offset 1m)) > bool 0.5`,
			metrics: []string{"x_total"}, labels: []string{"job", "state", "subscription", "unit"}, by: []string{"subscription", "unit"}, aggregated: true},
		{name: "aggregation after", expr: `sum(x) by (subscription)`,
			metrics: []string{"x"}, labels: []string{"subscription"}, by: []string{"subscription"}, aggregated: true},
		{name: "matching", expr: `a / on (subscription) group_left (unit) b`,
			metrics: []string{"a", "b"}, labels: []string{"subscription", "unit"}},
		{name: "string with braces", expr: `label_replace(up, "x", "{}", "y", "[(]")`,
			metrics: []string{"up"}},
		{name: "comment", expr: "x # not_a_metric\n > 1e3",
			metrics: []string{"x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := scanPromQL(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				what      string
				got, want []string
			}{{"metrics", q.metrics, tc.metrics}, {"labels", q.labels, tc.labels}, {"by", q.by, tc.by}} {
				if len(f.got) != 0 || len(f.want) != 0 {
					if !slices.Equal(f.got, f.want) {
						t.Errorf("%s: got %q, want %q", f.what, f.got, f.want)
					}
				}
			}
			if q.aggregated != tc.aggregated {
				t.Errorf("aggregated %v, want %v", q.aggregated, tc.aggregated)
			}
		})
	}
	for _, bad := range []string{`x{a="b"`, `x[5m`, `x{a="b}`, `sum by (a`} {
		if _, err := scanPromQL(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestAlertChecksDetectDrift changes a rule file one way at a time and
// expects the checks to report it: a guard against checks that check
// nothing.
func TestAlertChecksDetectDrift(t *testing.T) {
	t.Parallel()
	const good = `groups:
  - name: g
    rules:
      - alert: Stuck
        expr: |
          eventstore_daemon_subscription_stuck == 1
        for: 1m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.subscription }} is stuck"
          description: "Stuck."
`
	served := map[string]map[string]bool{
		"eventstore_daemon_subscription_stuck": {"subscription": true},
	}
	f, err := decodeRules([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p := append(ruleProblems(f), alertProblems(f, served)...); len(p) != 0 {
		t.Fatalf("the good file has problems: %q", p)
	}
	cases := []struct{ name, old, new string }{
		{"unknown metric", "eventstore_daemon_subscription_stuck ==", "eventstore_subscription_stuck =="},
		{"unknown label", "stuck == 1", `stuck{unit="x"} == 1`},
		{"label dropped by aggregation", "eventstore_daemon_subscription_stuck == 1", "max(eventstore_daemon_subscription_stuck) == 1"},
		{"unknown label in an annotation", "$labels.subscription", "$labels.sub"},
		{"bad duration", "for: 1m", "for: 1 minute"},
		{"no severity", "severity: critical", "priority: critical"},
		{"unknown severity", "severity: critical", "severity: page"},
		{"no description", `description: "Stuck."`, `runbook: "Stuck."`},
		{"bad name", "alert: Stuck", "alert: stuck-subscription"},
		{"no metric", "eventstore_daemon_subscription_stuck == 1", "vector(1)"},
		{"unbalanced template", `"{{ $labels.subscription }} is stuck"`, `"{{ $labels.subscription is stuck"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("%q is not in the good file", tc.old)
			}
			f, err := decodeRules([]byte(strings.Replace(good, tc.old, tc.new, 1)))
			if err != nil {
				return // refused outright: detected
			}
			if p := append(ruleProblems(f), alertProblems(f, served)...); len(p) == 0 {
				t.Errorf("no problem reported")
			}
		})
	}
	if m := missingAlerts(f); len(m) != len(alertedMetrics)-1 {
		t.Errorf("missingAlerts of a file that watches one of them: %q", m)
	}
}

// parseYAML reads the subset of YAML the rule files are written in: block
// mappings with plain keys, block sequences, plain, single- and
// double-quoted scalars on one line, and literal block scalars (| and |-).
// Every scalar is a string. Anything else (flow collections, anchors,
// tags, folded scalars, tabs, a key twice, a comment after a value, an
// empty value) is an error, so that what it reads is what Prometheus
// reads.
func parseYAML(data []byte) (any, error) {
	p := &yamlParser{lines: strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")}
	if !p.next() {
		return nil, errors.New("empty document")
	}
	v, err := p.node(p.indent())
	if err != nil {
		return nil, err
	}
	if p.next() {
		return nil, p.errorf("unexpected content at indentation %d", p.indent())
	}
	return v, nil
}

type yamlParser struct {
	lines []string
	i     int
	// item is set while the current line is the rest of a "- " item,
	// starting at column itemCol.
	item    bool
	itemCol int
}

// next moves to the next line that is not blank or a comment and reports
// whether there is one.
func (p *yamlParser) next() bool {
	for ; p.i < len(p.lines); p.i++ {
		t := strings.TrimLeft(p.lines[p.i], " ")
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
		p.item = false
	}
	return false
}

func (p *yamlParser) indent() int {
	if p.item {
		return p.itemCol
	}
	line := p.lines[p.i]
	return len(line) - len(strings.TrimLeft(line, " "))
}

// text is the current line without its indentation.
func (p *yamlParser) text() string {
	return strings.TrimRight(p.lines[p.i][p.indent():], " ")
}

func (p *yamlParser) advance() {
	p.i++
	p.item = false
}

func (p *yamlParser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.i+1, fmt.Sprintf(format, args...))
}

var yamlKey = regexp.MustCompile(`^([A-Za-z0-9_.-]+):(?: +(.*))?$`)

// node reads the mapping or sequence at indentation ind.
func (p *yamlParser) node(ind int) (any, error) {
	if strings.ContainsRune(p.lines[p.i][:p.indent()], '\t') || strings.HasPrefix(p.text(), "\t") {
		return nil, p.errorf("tab in indentation")
	}
	if t := p.text(); t == "-" || strings.HasPrefix(t, "- ") {
		return p.sequence(ind)
	}
	return p.mapping(ind)
}

func (p *yamlParser) sequence(ind int) (any, error) {
	var out []any
	for p.next() && p.indent() == ind {
		t := p.text()
		if t != "-" && !strings.HasPrefix(t, "- ") {
			return nil, p.errorf("a mapping key among sequence items")
		}
		rest := strings.TrimLeft(strings.TrimPrefix(t, "-"), " ")
		switch {
		case rest == "":
			p.advance()
			if !p.next() || p.indent() <= ind {
				return nil, p.errorf("empty sequence item")
			}
			v, err := p.node(p.indent())
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case yamlKey.MatchString(rest) || rest == "-" || strings.HasPrefix(rest, "- "):
			// The item is a block starting on this line.
			col := ind + len(t) - len(rest)
			p.item, p.itemCol = true, col
			v, err := p.node(col)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		default:
			v, err := yamlScalar(rest)
			if err != nil {
				return nil, p.errorf("%v", err)
			}
			out = append(out, v)
			p.advance()
		}
	}
	if p.i < len(p.lines) && p.indent() > ind {
		return nil, p.errorf("unexpected indentation %d in a sequence at %d", p.indent(), ind)
	}
	return out, nil
}

func (p *yamlParser) mapping(ind int) (any, error) {
	out := map[string]any{}
	for p.next() && p.indent() == ind {
		t := p.text()
		m := yamlKey.FindStringSubmatch(t)
		if m == nil {
			return nil, p.errorf("want \"key: value\", have %q", t)
		}
		key, rest := m[1], m[2]
		if _, dup := out[key]; dup {
			return nil, p.errorf("key %q appears twice", key)
		}
		switch rest {
		case "":
			p.advance()
			if !p.next() || p.indent() <= ind {
				return nil, p.errorf("key %q has no value", key)
			}
			v, err := p.node(p.indent())
			if err != nil {
				return nil, err
			}
			out[key] = v
		case "|", "|-":
			p.advance()
			out[key] = p.blockScalar(ind, rest == "|-")
		default:
			v, err := yamlScalar(rest)
			if err != nil {
				return nil, p.errorf("key %q: %v", key, err)
			}
			out[key] = v
			p.advance()
		}
	}
	if p.i < len(p.lines) && p.indent() > ind {
		return nil, p.errorf("unexpected indentation %d in a mapping at %d", p.indent(), ind)
	}
	return out, nil
}

// blockScalar reads the lines of a literal block scalar, more indented than
// ind, with one final newline, or none when strip is set (|-).
func (p *yamlParser) blockScalar(ind int, strip bool) string {
	var lines []string
	contentInd := -1
	for ; p.i < len(p.lines); p.i++ {
		line := p.lines[p.i]
		t := strings.TrimLeft(line, " ")
		lineInd := len(line) - len(t)
		if t == "" {
			lines = append(lines, "")
			continue
		}
		if lineInd <= ind {
			break
		}
		if contentInd < 0 {
			contentInd = lineInd
		}
		if lineInd < contentInd {
			break
		}
		lines = append(lines, line[contentInd:])
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	s := strings.Join(lines, "\n")
	if !strip && s != "" {
		s += "\n"
	}
	return s
}

// yamlScalar reads a scalar written on one line.
func yamlScalar(s string) (string, error) {
	switch s[0] {
	case '"':
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; c {
			case '"':
				if rest := strings.TrimSpace(s[i+1:]); rest != "" {
					return "", fmt.Errorf("%q after a quoted string", rest)
				}
				return b.String(), nil
			case '\\':
				i++
				if i == len(s) {
					return "", errors.New("unterminated string")
				}
				switch e := s[i]; e {
				case '"', '\\', '/':
					b.WriteByte(e)
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					return "", fmt.Errorf("escape \\%c not supported", e)
				}
			default:
				b.WriteByte(c)
			}
		}
		return "", errors.New("unterminated string")
	case '\'':
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] != '\'' {
				b.WriteByte(s[i])
				continue
			}
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			if rest := strings.TrimSpace(s[i+1:]); rest != "" {
				return "", fmt.Errorf("%q after a quoted string", rest)
			}
			return b.String(), nil
		}
		return "", errors.New("unterminated string")
	}
	if strings.ContainsRune("[]{}#&*!|>%@`,?:-", rune(s[0])) {
		return "", fmt.Errorf("plain value %q starts with %q: quote it", s, s[0])
	}
	if strings.Contains(s, ": ") || strings.Contains(s, " #") || strings.HasSuffix(s, ":") {
		return "", fmt.Errorf("plain value %q has \": \" or \" #\": quote it", s)
	}
	return s, nil
}

// TestParseYAML checks the YAML reader on what it takes and what it must
// refuse.
func TestParseYAML(t *testing.T) {
	t.Parallel()
	const doc = `# comment
a: plain value
b:
  - x
  - "q\"uoted"
  - k: v
    l: 'it''s'
c: |
  line 1

  line 2
d: |-
  stripped
e:
  f: g
`
	v, err := parseYAML([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(v)
	want := `{"a":"plain value","b":["x","q\"uoted",{"k":"v","l":"it's"}],"c":"line 1\n\nline 2\n","d":"stripped","e":{"f":"g"}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{
		"a: 1\na: 2\n",
		"a: {b: c}\n",
		"a: [b]\n",
		"a: &x b\n",
		"a: b # comment\n",
		"a: b: c\n",
		"a:\n",
		"a: b\n  c: d\n",
		"a:\n\t- b\n",
		"- a\nb: c\n",
		"a: \"open\n",
		"a: !!str b\n",
		"a: >\n  folded\n",
		"",
	} {
		if v, err := parseYAML([]byte(bad)); err == nil {
			got, _ := json.Marshal(v)
			t.Errorf("%q: no error, read %s", bad, got)
		}
	}
}
