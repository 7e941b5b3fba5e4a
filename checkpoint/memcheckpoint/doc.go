// Package memcheckpoint keeps checkpoints, parked commits and operators'
// requests in memory, for tests of code that uses package checkpoint.
//
// One type, [Mem], implements checkpoint.Store, checkpoint.Lister,
// checkpoint.Setter, checkpoint.Leaser, checkpoint.Deleter,
// checkpoint.ParkStore and checkpoint.RequestStore with the same semantics as the DynamoDB implementation (both pass
// checkpoint/checkpointtest): the same input rules, fencing, ordering and
// time precision (milliseconds, UTC). Nothing is persisted; a Mem is empty
// when created.
package memcheckpoint
