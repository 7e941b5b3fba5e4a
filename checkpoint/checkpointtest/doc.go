// Package checkpointtest is the conformance suite every implementation of
// checkpoint.Store and checkpoint.ParkStore passes: one set of tests for
// the promises package checkpoint documents (fencing, atomic claims,
// ordering, idempotent parking, requests replaced and completed atomically,
// complete reads, input rules), run against the in-memory and the DynamoDB
// implementations alike.
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
// The optional abilities (checkpoint.Lister and checkpoint.Setter of the
// Store, checkpoint.RequestStore of the ParkStore) are tested when the
// stores have them and reported as skipped otherwise.
package checkpointtest
