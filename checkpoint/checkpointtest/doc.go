// Package checkpointtest is the conformance suite every implementation of
// checkpoint.Store and checkpoint.ParkStore passes: one set of tests for
// the promises package checkpoint documents (fencing, atomic claims,
// ordering, idempotent parking, complete reads, input rules), run against
// the in-memory and the DynamoDB implementations alike.
//
// An implementation's tests call [Run]:
//
//	func TestConformance(t *testing.T) {
//		checkpointtest.Run(t, func(t *testing.T) (checkpoint.Store, checkpoint.ParkStore) {
//			s := memcheckpoint.New()
//			return s, s
//		})
//	}
//
// The optional abilities (checkpoint.Lister, checkpoint.Setter) are tested
// when the Store has them and reported as skipped otherwise.
package checkpointtest
