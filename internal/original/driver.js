// Driver for the original dynamodb-event-store package, run by the Go package
// internal/original. It speaks JSON lines: one request per line on stdin, one
// response per line on stdout, handled one at a time, in order.
//
//   request:  {"id":1,"op":"append","commit":{"aggregateId":"a","version":0,"events":[...]}}
//             {"id":2,"op":"query","aggregateId":"a","version":0}
//             {"id":3,"op":"scan","commitId":"..."}          (commitId optional)
//             {"id":4,"op":"createTable"}
//             {"id":5,"op":"appendMany","commits":[...],"concurrency":8}
//   response: {"id":1,"ok":true,"result":...}
//             {"id":1,"ok":false,"error":"...","name":"EventStoreVersionConflictError","versionConflict":true}
//
// Before the first request it writes {"id":0,"ok":true,"result":{"ready":true,...}}.
// Every operation is the package's own method; nothing here reimplements it.
// The configuration comes from argv[2] as JSON: {endpoint, tableName, indexName}.
'use strict';

const readline = require('readline');
const EventStore = require('dynamodb-event-store');

const config = JSON.parse(process.argv[2]);
const store = new EventStore({
  endpoint: config.endpoint,
  region: 'us-east-1',
  accessKeyId: 'local',
  secretAccessKey: 'local',
  tableName: config.tableName,
  indexName: config.indexName,
});

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function failure(id, err) {
  return {
    id,
    ok: false,
    error: String((err && err.message) || err),
    name: (err && (err.name || err.code)) || 'Error',
    versionConflict: err instanceof EventStore.VersionConflictError,
  };
}

// appendMany keeps up to concurrency appends in flight through the package's
// append, stops starting new ones after the first failure, and reports the
// number of successful appends and the elapsed milliseconds.
async function appendMany(commits, concurrency) {
  const n = Math.max(1, Math.min(concurrency || 1, commits.length || 1));
  let next = 0;
  let count = 0;
  let firstError = null;
  const start = process.hrtime.bigint();
  async function worker() {
    while (firstError === null && next < commits.length) {
      const commit = commits[next++];
      try {
        await store.append(commit);
        count++;
      } catch (err) {
        if (firstError === null) firstError = err;
      }
    }
  }
  await Promise.all(Array.from({ length: n }, worker));
  const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
  if (firstError !== null) {
    firstError.message = `${firstError.message} (after ${count} appends)`;
    throw firstError;
  }
  return { count, elapsedMs };
}

async function handle(req) {
  switch (req.op) {
    case 'append':
      await store.append(req.commit);
      return null;
    case 'query':
      return store.query({ aggregateId: req.aggregateId, version: req.version });
    case 'scan':
      return store.scan(req.commitId ? { commitId: req.commitId } : undefined);
    case 'createTable':
      await store.createTable();
      return null;
    case 'appendMany':
      return appendMany(req.commits || [], req.concurrency);
    default:
      throw new Error(`unknown op ${JSON.stringify(req.op)}`);
  }
}

async function main() {
  send({
    id: 0,
    ok: true,
    result: {
      ready: true,
      package: require('dynamodb-event-store/package.json').version,
      awsSdk: EventStore.AWS.VERSION,
      node: process.version,
    },
  });
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.trim() === '') continue;
    let req;
    try {
      req = JSON.parse(line);
    } catch (err) {
      send(failure(-1, new Error(`bad request line: ${err.message}`)));
      continue;
    }
    try {
      const result = await handle(req);
      send({ id: req.id, ok: true, result: result === undefined ? null : result });
    } catch (err) {
      send(failure(req.id, err));
    }
  }
  // stdin ended: the Go side closed the client, or died.
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`driver: ${(err && err.stack) || err}\n`);
  process.exit(1);
});
