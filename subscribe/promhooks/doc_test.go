package promhooks

import (
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// docMetric is one row of the table in the package documentation.
type docMetric struct {
	typ    string   // counter, gauge or histogram
	labels []string // label names, sorted
}

// docRow matches a row of the metric table in doc.go.
var docRow = regexp.MustCompile(`^\s+(eventstore_[a-z_]+)\s+(counter|gauge|histogram)\s+([a-z_]+(?:, [a-z_]+)*)\s{2,}\S`)

// docMetrics parses the metric table out of the package documentation.
func docMetrics(t *testing.T) map[string]docMetric {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil {
		t.Fatal("doc.go has no package comment")
	}
	out := map[string]docMetric{}
	for line := range strings.SplitSeq(f.Doc.Text(), "\n") {
		if !strings.Contains(line, "eventstore_") || !strings.HasPrefix(line, "\t") {
			continue
		}
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			// A row the pattern misses would silently drop out of the
			// comparison below.
			if strings.HasPrefix(strings.TrimSpace(line), "eventstore_") {
				t.Errorf("doc.go: row not understood: %q", line)
			}
			continue
		}
		if _, dup := out[m[1]]; dup {
			t.Errorf("doc.go lists %s twice", m[1])
		}
		labels := strings.Split(m[3], ", ")
		slices.Sort(labels)
		out[m[1]] = docMetric{typ: m[2], labels: labels}
	}
	if len(out) == 0 {
		t.Fatal("doc.go: no metric table found")
	}
	return out
}

// TestDocListsEveryMetric compares the table in the package documentation
// with the registry, both ways: every metric registered is listed with its
// type and labels, and every metric listed is registered.
func TestDocListsEveryMetric(t *testing.T) {
	doc := docMetrics(t)
	m, reg := newMetrics(t)
	callEveryHook(m, "s") // vectors export nothing until a series exists
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]docMetric{}
	for _, mf := range mfs {
		var labels []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		slices.Sort(labels)
		registered[mf.GetName()] = docMetric{typ: typeName(mf.GetType()), labels: labels}
	}
	for name, d := range doc {
		r, ok := registered[name]
		switch {
		case !ok:
			t.Errorf("doc.go lists %s, which is not registered", name)
		case r.typ != d.typ:
			t.Errorf("%s: doc.go says %s, registered as %s", name, d.typ, r.typ)
		case !slices.Equal(r.labels, d.labels):
			t.Errorf("%s: doc.go says labels %v, registered with %v", name, d.labels, r.labels)
		}
	}
	for name := range registered {
		if _, ok := doc[name]; !ok {
			t.Errorf("%s is registered but missing from the table in doc.go", name)
		}
	}
	// Every collector New made is behind one of the names: none is left
	// out of the comparison for lack of a series.
	if len(m.collectors) != len(registered) {
		t.Errorf("New made %d collectors; %d exported a series", len(m.collectors), len(registered))
	}
}

func typeName(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_GAUGE:
		return "gauge"
	case dto.MetricType_HISTOGRAM:
		return "histogram"
	}
	return t.String()
}
