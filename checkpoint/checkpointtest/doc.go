// Package checkpointtest is the conformance suite every implementation of
// checkpoint.Store and checkpoint.ParkStore passes: one set of tests for
// the promises package checkpoint documents (fencing, atomic claims,
// leases that expire, ordering, idempotent parking, requests replaced and
// completed atomically, complete reads, input rules), run against the
// in-memory and the DynamoDB implementations alike.
//
// An implementation's tests call [Run]:
//
//	func TestConformance(t *testing.T) {
//		checkpointtest.Run(t, func(t *testing.T, clock func() time.Time) (checkpoint.Store, checkpoint.ParkStore) {
//			s := memcheckpoint.NewWithClock(clock)
//			return s, s
//		})
//	}
//
// The stores must take their time from the clock Run passes: the tests of
// leases stop it and move it by hand.
//
// The optional abilities (checkpoint.Lister, checkpoint.Setter,
// checkpoint.Leaser and checkpoint.Deleter of the Store,
// checkpoint.RequestStore of the ParkStore) are tested when the stores have
// them and reported as skipped otherwise; the tests of checkpoint.Deleter
// also need checkpoint.Leaser.
package checkpointtest
