package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// workerTemplate runs the daemon as an ECS Fargate service.
const workerTemplate = "cloudformation/worker.json"

// pseudoValues are the values the tests give CloudFormation's pseudo
// parameters when they resolve a template.
var pseudoValues = map[string]string{
	"AWS::AccountId": "123456789012",
	"AWS::Partition": "aws",
	"AWS::Region":    "us-east-1",
	"AWS::StackName": "eventstore-worker",
	"AWS::URLSuffix": "amazonaws.com",
}

// noValue stands for AWS::NoValue while a template is resolved: a property
// that resolves to it is left out.
type noValue struct{}

// resolver evaluates a template's intrinsic functions for one set of
// parameter values, as CloudFormation would at deployment: Ref of a
// parameter or pseudo parameter, Fn::Sub of a string, Fn::If on the
// template's conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition).
// Ref of a resource and Fn::GetAtt resolve to placeholders ("ref:Name",
// "getatt:Name.Attribute"). Anything else is an error.
type resolver struct {
	params     map[string]string
	conditions map[string]any
	resources  map[string]resource
}

// newResolver resolves tpl with its parameters' defaults, overridden by
// params. A parameter with no default and no value fails when used.
func newResolver(tpl *template, raw map[string]any, params map[string]string) *resolver {
	r := &resolver{params: map[string]string{}, resources: tpl.Resources}
	r.conditions, _ = raw["Conditions"].(map[string]any)
	maps.Copy(r.params, pseudoValues)
	for name, p := range tpl.Parameters {
		if rawHasDefault(raw, name) {
			r.params[name] = p.Default
		}
	}
	maps.Copy(r.params, params)
	return r
}

func rawHasDefault(raw map[string]any, name string) bool {
	ps, _ := raw["Parameters"].(map[string]any)
	p, _ := ps[name].(map[string]any)
	_, ok := p["Default"]
	return ok
}

func (r *resolver) ref(name string) (string, error) {
	if v, ok := r.params[name]; ok {
		return v, nil
	}
	if _, ok := r.resources[name]; ok {
		return "ref:" + name, nil
	}
	return "", fmt.Errorf("Ref %s: no value (a parameter without default?)", name)
}

// value returns v with every intrinsic function evaluated.
func (r *resolver) value(v any) (any, error) {
	switch v := v.(type) {
	case []any:
		out := make([]any, 0, len(v))
		for _, e := range v {
			e, err := r.value(e)
			if err != nil {
				return nil, err
			}
			if _, skip := e.(noValue); !skip {
				out = append(out, e)
			}
		}
		return out, nil
	case map[string]any:
		if len(v) == 1 {
			for fn, arg := range v {
				if strings.HasPrefix(fn, "Fn::") || fn == "Ref" {
					return r.function(fn, arg)
				}
			}
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			e, err := r.value(e)
			if err != nil {
				return nil, err
			}
			if _, skip := e.(noValue); !skip {
				out[k] = e
			}
		}
		return out, nil
	}
	return v, nil
}

func (r *resolver) function(fn string, arg any) (any, error) {
	switch fn {
	case "Ref":
		name, _ := arg.(string)
		if name == "AWS::NoValue" {
			return noValue{}, nil
		}
		return r.ref(name)
	case "Fn::Sub":
		text, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("Fn::Sub %v: only the string form is resolved", arg)
		}
		var err error
		out := subVariable.ReplaceAllStringFunc(text, func(m string) string {
			name := m[2 : len(m)-1]
			if id, attr, ok := strings.Cut(name, "."); ok {
				return "getatt:" + id + "." + attr
			}
			v, e := r.ref(name)
			if e != nil && err == nil {
				err = e
			}
			return v
		})
		return strings.ReplaceAll(out, "${!", "${"), err
	case "Fn::GetAtt":
		a, _ := arg.([]any)
		if len(a) != 2 {
			return nil, fmt.Errorf("Fn::GetAtt %v", arg)
		}
		return fmt.Sprintf("getatt:%v.%v", a[0], a[1]), nil
	case "Fn::If":
		a, _ := arg.([]any)
		if len(a) != 3 {
			return nil, fmt.Errorf("Fn::If %v", arg)
		}
		name, _ := a[0].(string)
		ok, err := r.condition(name)
		if err != nil {
			return nil, err
		}
		if ok {
			return r.value(a[1])
		}
		return r.value(a[2])
	}
	return nil, fmt.Errorf("%s is not resolved by the tests", fn)
}

// condition evaluates the template's condition name.
func (r *resolver) condition(name string) (bool, error) {
	c, ok := r.conditions[name]
	if !ok {
		return false, fmt.Errorf("no condition %q", name)
	}
	return r.test(c)
}

func (r *resolver) test(c any) (bool, error) {
	m, _ := c.(map[string]any)
	if len(m) != 1 {
		return false, fmt.Errorf("condition %v", c)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Condition":
			name, _ := arg.(string)
			return r.condition(name)
		case "Fn::Equals":
			if len(args) != 2 {
				return false, fmt.Errorf("Fn::Equals %v", arg)
			}
			a, err := r.value(args[0])
			if err != nil {
				return false, err
			}
			b, err := r.value(args[1])
			if err != nil {
				return false, err
			}
			return fmt.Sprint(a) == fmt.Sprint(b), nil
		case "Fn::Not", "Fn::And", "Fn::Or":
			all, some := true, false
			for _, a := range args {
				ok, err := r.test(a)
				if err != nil {
					return false, err
				}
				all, some = all && ok, some || ok
			}
			switch fn {
			case "Fn::Not":
				return !all, nil
			case "Fn::And":
				return all, nil
			}
			return some, nil
		}
		return false, fmt.Errorf("condition function %s", fn)
	}
	return false, nil
}

// workerSetup is worker.json resolved for one set of parameters: the
// worker container, and the whole template.
type workerSetup struct {
	container map[string]any
	resources map[string]any
}

// resolveWorker resolves worker.json with params over its defaults.
func resolveWorker(t *testing.T, params map[string]string) *workerSetup {
	t.Helper()
	tpl, raw := loadTemplate(t, workerTemplate)
	r := newResolver(tpl, raw, params)
	resources, err := r.value(raw["Resources"])
	if err != nil {
		t.Fatalf("%s: %v", workerTemplate, err)
	}
	ws := &workerSetup{resources: resources.(map[string]any)}
	var taskDefs []string
	for id, res := range ws.resources {
		if res.(map[string]any)["Type"] == "AWS::ECS::TaskDefinition" {
			taskDefs = append(taskDefs, id)
		}
	}
	if len(taskDefs) != 1 {
		t.Fatalf("%s: task definitions %q, want one", workerTemplate, taskDefs)
	}
	containers, _ := ws.properties(taskDefs[0])["ContainerDefinitions"].([]any)
	if len(containers) != 1 {
		t.Fatalf("%s: %d containers, want one", workerTemplate, len(containers))
	}
	ws.container = containers[0].(map[string]any)
	return ws
}

func (ws *workerSetup) properties(id string) map[string]any {
	res, _ := ws.resources[id].(map[string]any)
	props, _ := res["Properties"].(map[string]any)
	return props
}

// env returns the container's environment variables and the names of its
// secrets.
func (ws *workerSetup) env() (env map[string]string, secrets []string, problems []string) {
	env = map[string]string{}
	list, _ := ws.container["Environment"].([]any)
	for _, e := range list {
		kv, _ := e.(map[string]any)
		name, _ := kv["Name"].(string)
		value, ok := kv["Value"].(string)
		if !ok {
			problems = append(problems, fmt.Sprintf("environment variable %s: value %v is not a string", name, kv["Value"]))
		}
		if _, dup := env[name]; dup {
			problems = append(problems, fmt.Sprintf("environment variable %s set twice", name))
		}
		env[name] = value
	}
	list, _ = ws.container["Secrets"].([]any)
	for _, e := range list {
		kv, _ := e.(map[string]any)
		name, _ := kv["Name"].(string)
		if _, dup := env[name]; dup || slices.Contains(secrets, name) {
			problems = append(problems, fmt.Sprintf("secret %s is set twice", name))
		}
		secrets = append(secrets, name)
	}
	return env, secrets, problems
}

// command returns the container's command: the arguments of the image's
// entrypoint.
func (ws *workerSetup) command() []string {
	var out []string
	list, _ := ws.container["Command"].([]any)
	for _, a := range list {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

// workerRequired are values for worker.json's parameters without default:
// what a deployment must give.
var workerRequired = map[string]string{
	"Image":            "123456789012.dkr.ecr.us-east-1.amazonaws.com/eventstore:test",
	"SubscriptionName": "orders",
	"WebhookUrl":       "https://orders.example.com/hook",
	"WebhookSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-webhook-AbCdEf",
	"VpcId":            "vpc-0123456789abcdef0",
	"Subnets":          "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
}

func withParams(base map[string]string, more map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, more)
	return out
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// settingsRead returns the environment variables the daemon reads when it
// is started with args, as the image's entrypoint (the eventstore CLI)
// runs it: the command's --help, with an env that records every name it is
// asked for.
func settingsRead(t *testing.T, args []string) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	read := map[string]bool{}
	env := func(name string) string {
		mu.Lock()
		defer mu.Unlock()
		read[name] = true
		return ""
	}
	var stdout, stderr lockedBuffer
	if code := cli.Run(t.Context(), append(slices.Clone(args), "--help"), strings.NewReader(""), &stdout, &stderr, env); code != 0 {
		t.Fatalf("eventstore %s --help: exit status %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	return read
}

// unknownSettings returns the names, sorted, that are not in read.
func unknownSettings(names []string, read map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !read[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// TestWorkerTemplateSetsDaemonSettings checks that every environment
// variable and secret the worker container gets is one the daemon reads
// (a misspelt EVENTSTORE_ variable is otherwise ignored in silence), and
// that the command runs the daemon.
func TestWorkerTemplateSetsDaemonSettings(t *testing.T) {
	t.Parallel()
	ws := resolveWorker(t, workerRequired)
	env, secrets, problems := ws.env()
	for _, p := range problems {
		t.Error(p)
	}
	if len(secrets) == 0 {
		t.Error("no secret: the webhook's secret comes from Secrets Manager")
	}
	if !slices.Equal(ws.command(), []string{"worker"}) {
		t.Errorf("command %q, want [worker] with the default WorkerCommand", ws.command())
	}
	read := settingsRead(t, ws.command())
	if len(read) < 20 {
		t.Fatalf("the daemon reads only %d variables: %q; is the recording broken?", len(read), sortedKeys(read))
	}
	names := append(slices.Collect(maps.Keys(env)), secrets...)
	for _, n := range unknownSettings(names, read) {
		t.Errorf("%s: the container sets %s, which the daemon does not read", workerTemplate, n)
	}
	// The check itself: a name the daemon does not read is reported.
	if got := unknownSettings([]string{"EVENTSTORE_TABLE", "EVENTSTORE_WEBHOOK_SECRET_ENV"}, read); !slices.Equal(got, []string{"EVENTSTORE_WEBHOOK_SECRET_ENV"}) {
		t.Errorf("unknownSettings of a made-up name: %q", got)
	}
	// A program built with daemon.Main takes the flags alone.
	ws = resolveWorker(t, withParams(workerRequired, map[string]string{"WorkerCommand": ""}))
	if c := ws.command(); len(c) != 0 {
		t.Errorf("command %q with an empty WorkerCommand, want none", c)
	}
}

// flagDefaults returns each daemon flag's default as its flag set shows it,
// with env as the environment.
func flagDefaults(env map[string]string) map[string]string {
	var cfg daemon.Config
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	cfg.RegisterFlags(fs, func(name string) string { return env[name] })
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.DefValue })
	return out
}

// defaultDrift lists the daemon settings that env (the container's
// environment at the template's defaults) sets to something other than
// the daemon's own default.
func defaultDrift(env map[string]string) []string {
	own, deployed := flagDefaults(nil), flagDefaults(env)
	var out []string
	for name, def := range own {
		if def != "" && deployed[name] != def {
			out = append(out, fmt.Sprintf("--%s: the template's default is %q, the daemon's %q", name, deployed[name], def))
		}
	}
	slices.Sort(out)
	return out
}

// TestWorkerTemplateDefaultsAreTheDaemons checks that, with its parameters'
// defaults, the template configures the daemon as its own defaults do:
// tables, listen address, log format and level, timeouts, concurrency,
// source, start, policy, retries.
func TestWorkerTemplateDefaultsAreTheDaemons(t *testing.T) {
	t.Parallel()
	env, _, _ := resolveWorker(t, workerRequired).env()
	for _, d := range defaultDrift(env) {
		t.Errorf("%s: %s", workerTemplate, d)
	}
	// The check itself.
	changed := withParams(env, map[string]string{
		"EVENTSTORE_CONCURRENCY":      strconv.Itoa(daemon.DefaultConcurrency + 1),
		"EVENTSTORE_SHUTDOWN_TIMEOUT": (daemon.DefaultShutdownTimeout + time.Second).String(),
	})
	if d := defaultDrift(changed); len(d) != len(defaultDrift(env))+2 {
		t.Errorf("two settings changed, defaultDrift reports %q", d)
	}
}

// TestWorkerTaskRoleIsTheWorkerPolicy checks that the daemon's task role
// has exactly the worker policy (worker-policy.json, which the
// permissions table holds to the code), and that the execution role, which
// is ECS's, reads exactly the secrets the container gets and no table.
func TestWorkerTaskRoleIsTheWorkerPolicy(t *testing.T) {
	t.Parallel()
	_, raw := loadTemplate(t, workerTemplate)
	ws := resolveWorker(t, workerRequired)
	roleID := strings.TrimPrefix(strings.TrimSuffix(fmt.Sprint(ws.properties(taskDefinitionID(t, ws))["TaskRoleArn"]), ".Arn"), "getatt:")
	resources, _ := raw["Resources"].(map[string]any)
	role, _ := resources[roleID].(map[string]any)
	if role["Type"] != "AWS::IAM::Role" {
		t.Fatalf("TaskRoleArn names %q, not a role of the template", roleID)
	}
	props, _ := role["Properties"].(map[string]any)
	if arns, ok := props["ManagedPolicyArns"]; ok {
		t.Errorf("task role %s: ManagedPolicyArns %v: it has the worker policy alone", roleID, arns)
	}
	policies, _ := props["Policies"].([]any)
	if len(policies) != 1 {
		t.Fatalf("task role %s: %d policies, want one: the worker policy", roleID, len(policies))
	}
	p, _ := policies[0].(map[string]any)
	fromTemplate := stripSub(p["PolicyDocument"])
	data, err := readJSON("iam/worker-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var fromFile any
	if err := json.Unmarshal(data, &fromFile); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromTemplate, fromFile) {
		got, _ := json.MarshalIndent(fromTemplate, "", "  ")
		t.Errorf("task role %s's policy, without Fn::Sub, differs from iam/worker-policy.json:\n%s", roleID, got)
	}
	js, _ := json.Marshal(fromTemplate)
	doc, err := decodePolicy(js)
	if err != nil {
		t.Fatalf("task role %s's policy: %v", roleID, err)
	}
	for _, problem := range policyProblems(doc, worker) {
		t.Errorf("task role %s: %s", roleID, problem)
	}

	// The execution role: GetSecretValue on the container's secrets.
	execID := strings.TrimPrefix(strings.TrimSuffix(fmt.Sprint(ws.properties(taskDefinitionID(t, ws))["ExecutionRoleArn"]), ".Arn"), "getatt:")
	var secretARNs []string
	list, _ := ws.container["Secrets"].([]any)
	for _, s := range list {
		secretARNs = append(secretARNs, fmt.Sprint(s.(map[string]any)["ValueFrom"]))
	}
	var granted []string
	execPolicies, _ := ws.properties(execID)["Policies"].([]any)
	for _, ep := range execPolicies {
		doc, _ := ep.(map[string]any)["PolicyDocument"].(map[string]any)
		sts, _ := doc["Statement"].([]any)
		for _, st := range sts {
			st := st.(map[string]any)
			for _, a := range st["Action"].([]any) {
				if a != "secretsmanager:GetSecretValue" {
					t.Errorf("execution role %s allows %v: it needs only secretsmanager:GetSecretValue beyond ECS's managed policy", execID, a)
				}
			}
			for _, r := range st["Resource"].([]any) {
				granted = append(granted, fmt.Sprint(r))
			}
		}
	}
	slices.Sort(granted)
	slices.Sort(secretARNs)
	if !slices.Equal(granted, secretARNs) {
		t.Errorf("execution role %s reads secrets %q, the container gets %q", execID, granted, secretARNs)
	}
}

func taskDefinitionID(t *testing.T, ws *workerSetup) string {
	t.Helper()
	for id, res := range ws.resources {
		if res.(map[string]any)["Type"] == "AWS::ECS::TaskDefinition" {
			return id
		}
	}
	t.Fatal("no task definition")
	return ""
}

// TestWorkerTemplateParameters checks the parameters the worker template
// shares with tables.json, and the service's scale.
func TestWorkerTemplateParameters(t *testing.T) {
	t.Parallel()
	worker, workerRaw := loadTemplate(t, workerTemplate)
	_, tablesRaw := loadTemplate(t, tablesTemplate)
	wp, _ := workerRaw["Parameters"].(map[string]any)
	tp, _ := tablesRaw["Parameters"].(map[string]any)
	for name, want := range tp {
		if !reflect.DeepEqual(wp[name], want) {
			t.Errorf("parameter %s of %s differs from that of %s", name, workerTemplate, tablesTemplate)
		}
	}
	if got := worker.Parameters["DesiredCount"].Default; got != "3" {
		t.Errorf("DesiredCount defaults to %q, want 3: several daemons share the subscription", got)
	}
	ws := resolveWorker(t, workerRequired)
	var services []map[string]any
	for id, res := range ws.resources {
		if res.(map[string]any)["Type"] == "AWS::ECS::Service" {
			services = append(services, ws.properties(id))
		}
	}
	if len(services) != 1 {
		t.Fatalf("%d ECS services, want one", len(services))
	}
	svc := services[0]
	if svc["DesiredCount"] != "3" || svc["LaunchType"] != "FARGATE" || svc["TaskDefinition"] != "ref:"+taskDefinitionID(t, ws) {
		t.Errorf("service: DesiredCount %v, LaunchType %v, TaskDefinition %v; want 3, FARGATE, the template's task definition", svc["DesiredCount"], svc["LaunchType"], svc["TaskDefinition"])
	}
}

// urlPattern finds the http URLs of a shell command.
var urlPattern = regexp.MustCompile(`http://[^\s/]+(/[^\s]*)?`)

// TestWorkerContainer checks the container's port, health check, stop
// timeout and logs against the daemon's settings.
func TestWorkerContainer(t *testing.T) {
	t.Parallel()
	const port = "54321"
	tpl, raw := loadTemplate(t, workerTemplate)
	ws := resolveWorker(t, withParams(workerRequired, map[string]string{"MetricsPort": port}))
	env, _, _ := ws.env()
	if got, want := env["EVENTSTORE_LISTEN"], ":"+port; got != want {
		t.Errorf("EVENTSTORE_LISTEN %q with MetricsPort %s, want %q", got, port, want)
	}
	ports, _ := ws.container["PortMappings"].([]any)
	if len(ports) != 1 || fmt.Sprint(ports[0].(map[string]any)["ContainerPort"]) != port {
		t.Errorf("PortMappings %v, want the container port %s", ports, port)
	}
	labels, _ := ws.container["DockerLabels"].(map[string]any)
	if labels["ECS_PROMETHEUS_EXPORTER_PORT"] != port || labels["ECS_PROMETHEUS_METRICS_PATH"] != "/metrics" {
		t.Errorf("DockerLabels %v, want the metrics port %s and path /metrics", labels, port)
	}

	// The health check: /healthz on the listen port (TestWorkerTemplateRunsTheDaemon
	// asks a running daemon for it).
	paths := healthCheckPaths(t, ws, port)
	if len(paths) == 0 || slices.ContainsFunc(paths, func(p string) bool { return p != "/healthz" }) {
		t.Errorf("health check paths %q, want /healthz: 200 while the daemon serves, also while it drains (/readyz turns 503 on a stuck subscription, and the task would be replaced for it)", paths)
	}
	if hc := resolveWorker(t, withParams(workerRequired, map[string]string{"ContainerHealthCheck": "false"})).container["HealthCheck"]; hc != nil {
		t.Errorf("ContainerHealthCheck false: HealthCheck %v, want none", hc)
	}

	// SIGTERM drains: ECS waits StopTimeout before SIGKILL, longer than
	// the daemon's longest shutdown timeout.
	stop, _ := ws.container["StopTimeout"].(float64)
	maxShutdown := paramBound(t, raw, "ShutdownTimeoutSeconds", "MaxValue")
	longest, _, _ := resolveWorker(t, withParams(workerRequired, map[string]string{"ShutdownTimeoutSeconds": maxShutdown})).env()
	d, err := time.ParseDuration(longest["EVENTSTORE_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("EVENTSTORE_SHUTDOWN_TIMEOUT %q: %v", longest["EVENTSTORE_SHUTDOWN_TIMEOUT"], err)
	}
	const margin = 5 * time.Second // the listener's close, the process's exit
	if time.Duration(stop)*time.Second < d+margin || stop > 120 {
		t.Errorf("StopTimeout %v s: want at least the longest shutdown timeout (%v) + %v, and at most 120 s (Fargate's limit)", stop, d, margin)
	}
	if got := tpl.Parameters["ShutdownTimeoutSeconds"].Default + "s"; got != daemon.DefaultShutdownTimeout.String() {
		t.Errorf("ShutdownTimeoutSeconds defaults to %s, the daemon's --shutdown-timeout to %v", got, daemon.DefaultShutdownTimeout)
	}

	// Logs: JSON lines to CloudWatch Logs, in the template's log group.
	logs, _ := ws.container["LogConfiguration"].(map[string]any)
	opts, _ := logs["Options"].(map[string]any)
	group := strings.TrimPrefix(fmt.Sprint(opts["awslogs-group"]), "ref:")
	if logs["LogDriver"] != "awslogs" || tpl.Resources[group].Type != "AWS::Logs::LogGroup" || opts["awslogs-region"] != pseudoValues["AWS::Region"] || opts["awslogs-stream-prefix"] == nil {
		t.Errorf("LogConfiguration %v: want awslogs to a log group of the template, in the stack's region, with a stream prefix", logs)
	}
	if env["EVENTSTORE_LOG_FORMAT"] != "json" {
		t.Errorf("EVENTSTORE_LOG_FORMAT %q, want json", env["EVENTSTORE_LOG_FORMAT"])
	}
}

// healthCheckPaths returns the paths of the health check's URLs, each of
// which must be on 127.0.0.1 or localhost at port.
func healthCheckPaths(t *testing.T, ws *workerSetup, port string) []string {
	t.Helper()
	hc, _ := ws.container["HealthCheck"].(map[string]any)
	cmd, _ := hc["Command"].([]any)
	if len(cmd) != 2 || cmd[0] != "CMD-SHELL" {
		t.Fatalf("HealthCheck.Command %v, want [CMD-SHELL, command]", cmd)
	}
	var paths []string
	for _, u := range urlPattern.FindAllString(fmt.Sprint(cmd[1]), -1) {
		m := urlPattern.FindStringSubmatch(u)
		host := strings.TrimSuffix(strings.TrimPrefix(u, "http://"), m[1])
		if host != "127.0.0.1:"+port && host != "localhost:"+port {
			t.Errorf("health check URL %s: want 127.0.0.1:%s, the daemon's listen port", u, port)
		}
		paths = append(paths, m[1])
	}
	return paths
}

func paramBound(t *testing.T, raw map[string]any, name, bound string) string {
	t.Helper()
	ps, _ := raw["Parameters"].(map[string]any)
	p, _ := ps[name].(map[string]any)
	v, ok := p[bound].(float64)
	if !ok {
		t.Fatalf("parameter %s has no %s", name, bound)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// freePort returns a TCP port free on this machine a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// scrape reads /metrics: each series name, with the names of its labels.
func scrape(url string) (map[string]map[string]bool, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseExposition(body)
}

// parseExposition reads Prometheus' text format: series names and their
// label names.
func parseExposition(body []byte) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("line %q", line)
		}
		name := line[:end]
		labels := out[name]
		if labels == nil {
			labels = map[string]bool{}
			out[name] = labels
		}
		if line[end] != '{' {
			continue
		}
		rest := line[end+1:]
		for !strings.HasPrefix(rest, "}") {
			eq := strings.Index(rest, `="`)
			if eq <= 0 {
				return nil, fmt.Errorf("line %q: bad labels", line)
			}
			labels[strings.TrimPrefix(rest[:eq], ",")] = true
			rest = rest[eq+2:]
			for i := 0; ; i++ {
				if i >= len(rest) {
					return nil, fmt.Errorf("line %q: unterminated label value", line)
				}
				if rest[i] == '\\' {
					i++
					continue
				}
				if rest[i] == '"' {
					rest = strings.TrimPrefix(rest[i+1:], ",")
					break
				}
			}
		}
	}
	return out, sc.Err()
}

// receiver is a webhook receiver that checks each request's signature and
// each aggregate's order.
type receiver struct {
	secret []byte
	mu     sync.Mutex
	next   map[string]int64
	got    int
	bad    []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := webhook.Verify(rc.secret, body, r.Header); err != nil {
		rc.bad = append(rc.bad, err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var c store.Commit
	if err := json.Unmarshal(body, &c); err != nil {
		rc.bad = append(rc.bad, fmt.Sprintf("body %q: %v", body, err))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	switch next := rc.next[c.AggregateID]; {
	case c.Version == next:
		rc.next[c.AggregateID]++
		rc.got++
	case c.Version > next:
		rc.bad = append(rc.bad, fmt.Sprintf("%s: version %d before %d", c.AggregateID, c.Version, next))
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) state() (int, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got, slices.Clone(rc.bad)
}

// waitFor calls check at once, then every 100 ms until it reports no
// problem or timeout passes, and returns what it last reported.
func waitFor(timeout time.Duration, check func() []string) []string {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		p := check()
		if len(p) == 0 || time.Now().After(deadline) {
			return p
		}
		<-tick.C
	}
}

// TestWorkerTemplateRunsTheDaemon runs the daemon as the worker container
// would: the eventstore CLI with the template's command, and an
// environment of exactly the template's variables (at their defaults, on
// this test's tables and webhook receiver) and secret; plus the endpoint of
// DynamoDB Local, which stands for AWS. The daemon must start, deliver
// signed requests (the secret reached it), answer the health check's URL,
// and serve every metric and label that alerts.yml uses. Then it must stop
// cleanly.
func TestWorkerTemplateRunsTheDaemon(t *testing.T) {
	t.Parallel()
	client := ddbtest.Client(t)
	commits, checkpoints := ddbtest.TableName(t), ddbtest.TableName(t)+"-cp"
	storeCfg, cpCfg := store.Config{TableName: commits}, dynamocheckpoint.Config{TableName: checkpoints}
	if err := store.CreateTable(t.Context(), client, storeCfg, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, storeCfg) })
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cpCfg) })
	st, err := store.New(client, storeCfg)
	if err != nil {
		t.Fatal(err)
	}

	const secret = "the secret Secrets Manager holds"
	rc := &receiver{secret: []byte(secret), next: map[string]int64{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)

	port := freePort(t)
	ws := resolveWorker(t, withParams(workerRequired, map[string]string{
		"CommitsTableName":    commits,
		"CheckpointTableName": checkpoints,
		"WebhookUrl":          srv.URL,
		"MetricsPort":         port,
	}))
	env, secrets, problems := ws.env()
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	for _, s := range secrets {
		env[s] = secret // what ECS puts in the container's environment
	}
	env["EVENTSTORE_ENDPOINT"] = ddbtest.Endpoint(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	exited := make(chan struct{})
	var code int // once exited is closed
	go func() {
		defer close(exited)
		code = cli.Run(ctx, ws.command(), strings.NewReader(""), &stdout, &stderr, func(name string) string { return env[name] })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
		}
	})

	base := "http://127.0.0.1:" + port
	healthPaths := healthCheckPaths(t, ws, port)
	started := waitFor(60*time.Second, func() []string {
		select {
		case <-exited:
			return nil
		default:
		}
		var out []string
		for _, p := range healthPaths {
			resp, err := http.Get(base + p)
			if err != nil {
				out = append(out, err.Error())
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				out = append(out, fmt.Sprintf("GET %s: %s", p, resp.Status))
			}
		}
		return out
	})
	select {
	case <-exited:
		t.Fatalf("the daemon exited with status %d\n%s", code, stderr.String())
	default:
	}
	if len(started) != 0 {
		t.Fatalf("the health check's URLs do not answer 200 within 60 s: %q\n%s", started, stderr.String())
	}

	const n, aggregates = 12, 3
	for i := range n {
		c := store.Commit{AggregateID: fmt.Sprintf("order-%d", i%aggregates), Version: int64(i / aggregates), Events: json.RawMessage(`[{"type":"Placed"}]`)}
		if _, err := st.Append(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	delivered := waitFor(60*time.Second, func() []string {
		got, bad := rc.state()
		if len(bad) != 0 {
			return bad
		}
		if got < n {
			return []string{fmt.Sprintf("%d of %d commits delivered", got, n)}
		}
		return nil
	})
	if len(delivered) != 0 {
		t.Fatalf("webhook: %q\n%s", delivered, stderr.String())
	}

	rules, err := loadRules(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	metricsPath, _ := ws.container["DockerLabels"].(map[string]any)["ECS_PROMETHEUS_METRICS_PATH"].(string)
	var served map[string]map[string]bool
	// Some series appear only once the checkpoint is saved or a lease held.
	for _, p := range waitFor(30*time.Second, func() []string {
		var err error
		if served, err = scrape(base + metricsPath); err != nil {
			return []string{err.Error()}
		}
		return alertProblems(rules, served)
	}) {
		t.Errorf("%s: %s", alertRules, p)
	}
	// The check itself, on this scrape: a misspelt metric is reported.
	typo := &ruleFile{Groups: []ruleGroup{{Name: "g", Rules: []alertRule{{Alert: "Typo", Expr: "eventstore_daemon_subscription_stuk == 1"}}}}}
	if len(alertProblems(typo, served)) == 0 {
		t.Error("alertProblems reports no problem for a metric the daemon does not serve")
	}

	cancel()
	select {
	case <-exited:
		if code != 0 {
			t.Errorf("exit status %d after the stop, want 0\n%s", code, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not stop within 60 s\n%s", stderr.String())
	}
}
