// The worker helper against the real server: a function per chunk over the Work stream, with
// retries, final failures, heartbeats and a clean stop.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ChunkStatus,
  Code,
  ConnectError,
  JobStatus,
  WorkAckKind,
  complete,
  createNodeTransport,
  fail,
  retry,
  runChunks,
  type JobProgress,
  type WorkAck,
} from "retryd-client/node";

import { bytes, clientsAs, keyFor, serverUrl, unique } from "./support.js";

const workerTransport = () => createNodeTransport({ baseUrl: serverUrl(), apiKey: keyFor("worker") });
const fastRetries = { initialBackoffMs: 10, multiplier: 2, maxBackoffMs: 50 };

test("a job is created, worked by runChunks and watched to 100 %", { timeout: 60_000 }, async () => {
  const { chunkQueue } = clientsAs("admin");
  const queue = unique("ts-worker");
  const job = await chunkQueue.createJob({
    jobId: unique("job"),
    queue,
    chunks: Array.from({ length: 20 }, (_, i) => ({ payload: bytes(i) })),
    retryPolicy: fastRetries,
  });
  assert.equal(job.totalChunks, 20);
  const watched: JobProgress[] = [];
  const watching = (async () => {
    for await (const progress of chunkQueue.watchJob({ jobId: job.jobId })) watched.push(progress);
  })();

  const stop = new AbortController();
  const worker = runChunks(
    workerTransport(),
    { queue, workerId: "ts-worker-1", concurrency: 4, signal: stop.signal },
    (chunk) => {
      const n = chunk.payload[0]!;
      if (n === 7) return fail("bad input");
      if (n === 3 && chunk.attempt === 1) return retry("flaky");
      if (n === 5 && chunk.attempt === 1) throw new Error("thrown on the first attempt");
      return complete(bytes(n * 2));
    },
  );
  await watching;
  stop.abort();
  await worker;

  const last = watched.at(-1)!;
  assert.equal(last.overallStatus, JobStatus.PARTIAL_FAILURE);
  assert.deepEqual([last.completed, last.failed, last.progressPercentage], [19, 1, 100]);
  const percentages = watched.map((progress) => progress.progressPercentage);
  assert.deepEqual(percentages, [...percentages].sort((a, b) => a - b), "progress never goes back");

  const { chunks } = await chunkQueue.listChunks({ jobId: job.jobId });
  assert.deepEqual([chunks[3]!.attempts, chunks[3]!.status], [2, ChunkStatus.COMPLETED], "retried once");
  assert.deepEqual([chunks[5]!.attempts, chunks[5]!.lastError], [2, "thrown on the first attempt"]);
  assert.deepEqual([chunks[7]!.status, chunks[7]!.lastError], [ChunkStatus.FAILED, "bad input"]);
  assert.deepEqual(chunks[9]!.result, bytes(18), "the function's result is kept");
});

test("heartbeats extend the lease of a chunk in hand", { timeout: 30_000 }, async () => {
  const { chunkQueue } = clientsAs("admin");
  const queue = unique("ts-heartbeat");
  await chunkQueue.createJob({ jobId: unique("job"), queue, chunks: [{ payload: bytes(1) }] });
  const acks: WorkAck[] = [];
  let heartbeatAccepted: () => void = () => {};
  const accepted = new Promise<void>((resolve) => (heartbeatAccepted = resolve));
  const stop = new AbortController();
  let leasedUntil = 0n;
  const worker = runChunks(
    workerTransport(),
    {
      queue,
      workerId: "ts-heartbeat",
      leaseSeconds: 30,
      heartbeatMs: 20,
      signal: stop.signal,
      onAck: (ack) => {
        acks.push(ack);
        if (ack.kind === WorkAckKind.HEARTBEAT && ack.code === 0) heartbeatAccepted();
      },
    },
    async (chunk) => {
      leasedUntil = micros(chunk.leaseExpiresAt!);
      // Finish only once the server has accepted a heartbeat for this chunk.
      await accepted;
      return complete();
    },
  );
  await accepted;
  stop.abort();
  await worker;

  const heartbeat = acks.find((ack) => ack.kind === WorkAckKind.HEARTBEAT && ack.code === 0)!;
  assert.ok(micros(heartbeat.leaseExpiresAt!) > leasedUntil, "the lease runs longer than first granted");
  const completion = acks.find((ack) => ack.kind === WorkAckKind.COMPLETE)!;
  assert.equal(completion.code, 0);
});

test("aborting finishes the chunks in hand, takes no more, and leaves the rest to others", { timeout: 30_000 }, async () => {
  const { chunkQueue } = clientsAs("admin");
  const queue = unique("ts-stop");
  const job = await chunkQueue.createJob({
    jobId: unique("job"),
    queue,
    chunks: Array.from({ length: 5 }, (_, i) => ({ payload: bytes(i) })),
  });
  const stop = new AbortController();
  let started = 0;
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const worker = runChunks(
    workerTransport(),
    { queue, workerId: "ts-stopper", concurrency: 2, signal: stop.signal },
    async () => {
      started += 1;
      if (started === 2) {
        // Both chunks the worker has room for are in hand: stop, then let them finish.
        stop.abort();
        release();
      }
      await released;
      return complete();
    },
  );
  await worker;
  assert.equal(started, 2, "no chunk is taken after the abort");

  const { chunks } = await chunkQueue.listChunks({ jobId: job.jobId });
  const byStatus = (status: ChunkStatus) => chunks.filter((chunk) => chunk.status === status).length;
  assert.deepEqual([byStatus(ChunkStatus.COMPLETED), byStatus(ChunkStatus.PENDING)], [2, 3]);
  // The rest is claimable at once by another worker.
  const { chunkQueue: otherWorker } = clientsAs("worker");
  const claimed = await otherWorker.claimChunks({ queue, workerId: "other", maxChunks: 5 });
  assert.equal(claimed.chunks.length, 3);
});

test("a worker whose key may not work gets the server's refusal", { timeout: 30_000 }, async () => {
  const readerTransport = createNodeTransport({ baseUrl: serverUrl(), apiKey: keyFor("reader") });
  await assert.rejects(
    runChunks(readerTransport, { queue: unique("ts-refused"), workerId: "reader" }, () => complete()),
    (error: unknown) => error instanceof ConnectError && error.code === Code.PermissionDenied,
  );
});

function micros(timestamp: { seconds: bigint; nanos: number }): bigint {
  return timestamp.seconds * 1_000_000n + BigInt(Math.floor(timestamp.nanos / 1000));
}
