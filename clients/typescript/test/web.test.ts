// The browser transport (gRPC-Web over fetch) against the real server, run under Node's fetch:
// unary calls and a server stream (WatchJob), with the API key.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Code, ConnectError, JobStatus, createRetrydClients, createWebTransport, type JobProgress } from "retryd-client/web";

import { bytes, keyFor, serverUrl, unique } from "./support.js";

const overGrpcWeb = (apiKey?: string) => createRetrydClients(createWebTransport({ baseUrl: serverUrl(), apiKey }));

test("gRPC-Web: create, claim, complete and watch a job to 100 %", { timeout: 30_000 }, async () => {
  const { chunkQueue } = overGrpcWeb(keyFor("admin"));
  const queue = unique("ts-web");
  const job = await chunkQueue.createJob({ jobId: unique("job"), queue, chunks: [{ payload: bytes(1) }, { payload: bytes(2) }] });
  const watched: JobProgress[] = [];
  const watching = (async () => {
    for await (const progress of chunkQueue.watchJob({ jobId: job.jobId })) watched.push(progress);
  })();

  const { chunks } = await chunkQueue.claimChunks({ queue, workerId: "web", maxChunks: 2, leaseSeconds: 60 });
  assert.equal(chunks.length, 2);
  for (const chunk of chunks) {
    await chunkQueue.completeChunk({ chunkId: chunk.chunkId, leaseToken: chunk.leaseToken, result: chunk.payload });
  }
  await watching;
  const last = watched.at(-1)!;
  assert.deepEqual([last.overallStatus, last.progressPercentage, last.completed], [JobStatus.COMPLETED, 100, 2]);
});

test("gRPC-Web: a call without a key is unauthenticated", async () => {
  await assert.rejects(
    overGrpcWeb().chunkQueue.listJobs({}),
    (error: unknown) => error instanceof ConnectError && error.code === Code.Unauthenticated,
  );
});
