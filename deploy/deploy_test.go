package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The files this folder's tests check, relative to it.
const (
	tablesTemplate = "cloudformation/tables.json"
	iamTemplate    = "cloudformation/iam.json"
)

// template is the part of a CloudFormation template the tests read.
type template struct {
	AWSTemplateFormatVersion string
	Parameters               map[string]parameter
	Resources                map[string]resource
	Outputs                  map[string]struct{ Value any }
}

type parameter struct {
	Type    string
	Default string
}

type resource struct {
	Type                string
	DeletionPolicy      string
	UpdateReplacePolicy string
	Properties          json.RawMessage
}

// pseudoParameters are CloudFormation's own parameters, which Ref and Fn::Sub
// may name besides the template's.
var pseudoParameters = []string{
	"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
	"AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}

// templateSections are the top-level keys a template may have.
var templateSections = []string{
	"AWSTemplateFormatVersion", "Conditions", "Description", "Mappings",
	"Metadata", "Outputs", "Parameters", "Resources", "Rules", "Transform",
}

// readJSON reads a file of this folder and checks that it is one valid JSON
// value with no object key twice (encoding/json would keep the last one
// silently, and so might a deployment tool).
func readJSON(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		return nil, fmt.Errorf("%s: not valid JSON: %v", path, err)
	}
	if err := noDuplicateKeys(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

func noDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := tok.(string)
				if seen[key] {
					return fmt.Errorf("%s: key %q appears twice", path, key)
				}
				seen[key] = true
				if err := walk(path + "." + key); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk("$"); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	return nil
}

// loadTemplate reads a template as typed values and as plain JSON values.
func loadTemplate(t *testing.T, path string) (*template, map[string]any) {
	t.Helper()
	data, err := readJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	var tpl template
	if err := json.Unmarshal(data, &tpl); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &tpl, raw
}

// TestJSONFilesAreValid checks every JSON file under deploy/: one valid
// value, no key twice.
func TestJSONFilesAreValid(t *testing.T) {
	t.Parallel()
	var found []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		found = append(found, filepath.ToSlash(path))
		if _, err := readJSON(path); err != nil {
			t.Error(err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{tablesTemplate, iamTemplate, workerTemplate, "iam/writer-policy.json", "iam/worker-policy.json", "iam/operator-policy.json"} {
		if !slices.Contains(found, want) {
			t.Errorf("%s is missing", want)
		}
	}
}

// subVariable matches a ${Name} or ${Name.Attribute} of Fn::Sub, not the
// literal ${!Name}.
var subVariable = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// TestTemplatesAreWellFormed checks each template's sections, and that every
// Ref, Fn::GetAtt and Fn::Sub variable names something the template or
// CloudFormation defines, and every condition used is defined: a typo
// there is valid JSON that fails only at deployment.
func TestTemplatesAreWellFormed(t *testing.T) {
	t.Parallel()
	for _, path := range []string{tablesTemplate, iamTemplate, workerTemplate} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			tpl, raw := loadTemplate(t, path)
			if tpl.AWSTemplateFormatVersion != "2010-09-09" {
				t.Errorf("AWSTemplateFormatVersion %q, want 2010-09-09", tpl.AWSTemplateFormatVersion)
			}
			for key := range raw {
				if !slices.Contains(templateSections, key) {
					t.Errorf("unknown top-level section %q", key)
				}
			}
			for name, p := range tpl.Parameters {
				if p.Type == "" {
					t.Errorf("parameter %s has no Type", name)
				}
			}
			for id, r := range tpl.Resources {
				if !strings.HasPrefix(r.Type, "AWS::") {
					t.Errorf("resource %s has Type %q", id, r.Type)
				}
			}
			known := func(name string) bool {
				_, param := tpl.Parameters[name]
				_, res := tpl.Resources[name]
				return param || res || slices.Contains(pseudoParameters, name)
			}
			for _, problem := range badReferences(raw, known, func(id string) bool { _, ok := tpl.Resources[id]; return ok }) {
				t.Error(problem)
			}
			conditions, _ := raw["Conditions"].(map[string]any)
			for _, name := range conditionsUsed(raw) {
				if _, ok := conditions[name]; !ok {
					t.Errorf("condition %q is not defined", name)
				}
			}
		})
	}
}

// conditionsUsed lists the conditions v names: resources' and outputs'
// Condition, Fn::If's first argument, and the Condition function of
// conditions.
func conditionsUsed(v any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			if name, ok := v["Condition"].(string); ok {
				out = append(out, name)
			}
			if args, ok := v["Fn::If"].([]any); ok && len(args) == 3 {
				name, _ := args[0].(string)
				out = append(out, name)
			}
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// badReferences lists the Refs, Fn::GetAtts and Fn::Sub variables under v
// that name nothing known.
func badReferences(v any, known, isResource func(string) bool) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			if ref, ok := v["Ref"].(string); ok && len(v) == 1 && !known(ref) {
				out = append(out, fmt.Sprintf("Ref %q names no parameter or resource", ref))
			}
			if ga, ok := v["Fn::GetAtt"]; ok && len(v) == 1 {
				var id string
				switch ga := ga.(type) {
				case []any:
					if len(ga) == 2 {
						id, _ = ga[0].(string)
					}
				case string:
					id, _, _ = strings.Cut(ga, ".")
				}
				if !isResource(id) {
					out = append(out, fmt.Sprintf("Fn::GetAtt %v names no resource", ga))
				}
			}
			if sub, ok := v["Fn::Sub"]; ok && len(v) == 1 {
				text, vars := "", map[string]any{}
				switch sub := sub.(type) {
				case string:
					text = sub
				case []any:
					if len(sub) == 2 {
						text, _ = sub[0].(string)
						vars, _ = sub[1].(map[string]any)
					}
				}
				for _, m := range subVariable.FindAllStringSubmatch(text, -1) {
					name := m[1]
					if _, ok := vars[name]; ok {
						continue
					}
					if id, _, attr := strings.Cut(name, "."); attr && isResource(id) {
						continue
					}
					if !known(name) {
						out = append(out, fmt.Sprintf("Fn::Sub %q: ${%s} names no parameter or resource", text, name))
					}
				}
			}
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// TestTemplatesPassCfnLint runs cfn-lint, when it is installed, on the
// templates: it knows every resource type's properties and every IAM action
// name. Errors and warnings fail the test; informational notes do not.
func TestTemplatesPassCfnLint(t *testing.T) {
	t.Parallel()
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint is not on PATH")
	}
	files, err := filepath.Glob("cloudformation/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates: %v", err)
	}
	out, err := exec.CommandContext(t.Context(), lint, append([]string{"--format", "parseable"}, files...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode()&^8 == 0: // informational only
		t.Logf("cfn-lint notes:\n%s", out)
	default:
		t.Errorf("cfn-lint: %v\n%s", err, out)
	}
}
