// Package deploy holds infrastructure files, not Go code: what it takes to
// run the event store on AWS. They are kept in step with the code by this
// folder's tests, so that changing a table definition or the DynamoDB calls
// a component makes without changing these files (or the reverse) fails
// `go test ./deploy/`.
//
//   - cloudformation/tables.json creates the commits table (with its
//     commit-order index and stream) and the checkpoints table, as
//     store.TableDefinition and dynamocheckpoint.TableDefinition define them.
//   - cloudformation/iam.json creates least-privilege IAM managed policies for
//     a writer (an application), the worker daemon and an operator (the CLI).
//   - iam/*.json are the same policies as plain documents, with placeholders.
//   - cloudformation/worker.json runs the worker daemon (package daemon) as
//     an ECS Fargate service whose tasks share a subscription through
//     leases, configured by the daemon's EVENTSTORE_* variables.
//   - prometheus/alerts.yml holds Prometheus alerting rules on the daemon's
//     metrics.
//
// The tests check the worker template against the daemon's settings and
// the worker policy, and run the daemon as the template configures it
// (against DynamoDB Local) to check that it serves every metric the alerts
// use.
//
// See README.md in this folder for how to deploy them. Kubernetes
// manifests and a Grafana dashboard are not here yet.
package deploy
