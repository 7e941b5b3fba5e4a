// Package promhooks exports the subscription worker's hooks and the
// store's consumed capacity as Prometheus metrics. It is the only package
// of the module that imports Prometheus: the worker and the store know
// nothing of it.
//
// New creates the metrics and registers them with a prometheus.Registerer.
// The *Metrics it returns implements every hook interface of package
// subscribe (put it in subscribe.Config.Hooks), and its ConsumedCapacity
// method fits store.Config.ConsumedCapacity:
//
//	m, err := promhooks.New(prometheus.DefaultRegisterer)
//	if err != nil {
//		return err
//	}
//	st, err := store.New(client, store.Config{ConsumedCapacity: m.ConsumedCapacity})
//	…
//	w, err := subscribe.NewWorker(subscribe.Config{Reader: st, Checkpoints: cps, Hooks: []any{m}})
//
// # Metrics
//
// Every name starts with the namespace, "eventstore" unless WithNamespace
// sets another. Durations are in seconds. The label subscription is the
// subscription's name; operation is a store.Operation (Append, AppendAll,
// Query, Scan); resource is the name of a table or of an index; kind is a
// checkpoint.RequestKind (replay, discard) and result is ok or error; unit
// is a unit of a subscription shared through leases (subscribe.LeaseOptions:
// "bucket-t3", or "" for the whole subscription).
//
//	name                                                   type       labels                      meaning
//	eventstore_subscription_commits_handled_total          counter    subscription                commits handled successfully by the handler
//	eventstore_subscription_events_handled_total           counter    subscription                events carried by those commits
//	eventstore_subscription_handler_duration_seconds       histogram  subscription                duration of each handler call, successful or not (_count: calls)
//	eventstore_subscription_handler_errors_total           counter    subscription                handler calls that returned an error or panicked
//	eventstore_subscription_retries_total                  counter    subscription                retries of a failed handler call
//	eventstore_subscription_parked_commits_total           counter    subscription                commits set aside by PolicyPark
//	eventstore_subscription_skipped_commits_total          counter    subscription                commits skipped by PolicySkip or by Skip
//	eventstore_subscription_late_arrivals_total            counter    subscription                commits that became visible after the source read past them, delivered late
//	eventstore_subscription_gap_repairs_total              counter    subscription                per-aggregate version gaps found and repaired
//	eventstore_subscription_gap_repair_commits_total       counter    subscription                commits fetched from the table to fill those gaps
//	eventstore_subscription_duplicates_total               counter    subscription                commits dropped as already delivered
//	eventstore_subscription_polls_total                    counter    subscription                polls of the source, successful or not
//	eventstore_subscription_poll_duration_seconds          histogram  subscription                duration of each poll
//	eventstore_subscription_poll_errors_total              counter    subscription                polls that failed
//	eventstore_subscription_commits_read_total             counter    subscription                commits read by polls
//	eventstore_subscription_checkpoint_writes_total        counter    subscription                checkpoint writes attempted, successful or not
//	eventstore_subscription_checkpoint_write_errors_total  counter    subscription                checkpoint writes that failed
//	eventstore_subscription_lag_seconds                    gauge      subscription                age of the oldest commit not yet handled, by the clock (it grows while reads fail); 0 when caught up
//	eventstore_subscription_lag_commits                    gauge      subscription                commits read but not yet handled
//	eventstore_subscription_stopped                        gauge      subscription                1 once the subscription stopped on an error; 0 again at its next poll
//	eventstore_subscription_corrupt_items_total            counter    subscription, kind          items of the commits table that are not well-formed commits of their key, by kind (store.CorruptKind), parked or skipped
//	eventstore_subscription_gaps_unfilled_total            counter    subscription                version gaps still missing from the table after the gap timeout, handled by the Corrupt policy
//	eventstore_subscription_stream_records_ignored_total   counter    subscription                stream records passed over: not an insert of a commit (MODIFY, REMOVE, other items)
//	eventstore_subscription_requests_total                 counter    subscription, kind, result  operators' requests carried out (kind replay or discard; result ok, or error when it failed)
//	eventstore_subscription_leases_held                    gauge      subscription, unit          1 while this worker holds the unit's lease, 0 once it released or lost it (a stream shard's series is removed instead)
//	eventstore_subscription_lease_gains_total              counter    subscription                leases of units taken by this worker (free, expired, or stolen to balance the load)
//	eventstore_subscription_lease_losses_total             counter    subscription                leases lost: taken by another worker or expired before renewal (releases not counted)
//	eventstore_subscription_lease_renewal_failures_total   counter    subscription                lease renewals that failed and were retried
//	eventstore_subscription_circuit_open                   gauge      subscription                1 while the subscription's circuit is open (the handler failed for several aggregates in a row; only probes call it)
//	eventstore_subscription_circuit_openings_total         counter    subscription                times the circuit opened
//	eventstore_subscription_parked_commits                 gauge      subscription                commits parked now (this worker's units')
//	eventstore_subscription_parked_aggregates              gauge      subscription                aggregates with commits parked now (this worker's units')
//	eventstore_store_consumed_capacity_units_total         counter    operation, resource         DynamoDB capacity units consumed by store calls, per table and per index
//
// A subscription's series appear when its first hook is called, or at New
// for the subscriptions named with WithSubscriptions. The lag gauges are
// set about once per checkpoint interval. The worker does not call
// OnStopped on a clean stop, so stopped stays 0 then.
//
// Consumed capacity is reported only when the store asks DynamoDB for it,
// which it does when store.Config.ConsumedCapacity is set. Summed over
// resource, the counter is the capacity consumed by all calls; a
// transaction's capacity (AppendAll) is DynamoDB's, already doubled.
//
// The parked gauges are set when a unit starts and finds commits parked,
// and at each park, replay and discard. With several workers sharing a
// subscription through leases, each exports the parked commits of the
// units it runs: sum them by subscription for index buckets; every stream
// shard unit knows every parked aggregate, so take the max for a stream
// subscription.
//
// Useful queries: rate(…_handler_errors_total[5m]), …_parked_commits > 0
// and increase(…_parked_commits_total[1h]) for failing handlers,
// …_circuit_open == 1 for a receiver that is down, max by
// (subscription) (…_lag_seconds) for freshness, and …_stopped == 1 for a
// subscription that needs an operator; sum by (subscription, unit)
// (…_leases_held) across workers is 1 for every unit of a subscription
// shared through leases, and increase(…_lease_losses_total[1h]) shows
// workers that lose their leases (paused, or cut off from DynamoDB).
//
// New returns an error, never panics, when a metric cannot be registered
// (a second New with the same namespace on one registry is one such case).
// Every method of *Metrics is safe for concurrent use and never blocks.
package promhooks
