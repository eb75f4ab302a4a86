// API keys: the transport's `apiKey` option authenticates every call; the server refuses calls
// without a valid key and calls the key's role may not make.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Code,
  ConnectError,
  apiKeyInterceptor,
  createNodeTransport,
  createRetrydClients,
} from "retryd-client/node";

import { bytes, clientsAs, serverUrl, unique } from "./support.js";

const refusedWith = (code: Code) => (error: unknown) => error instanceof ConnectError && error.code === code;

test("calls without a valid key are unauthenticated", async () => {
  const anonymous = createRetrydClients(createNodeTransport({ baseUrl: serverUrl() }));
  const forged = createRetrydClients(createNodeTransport({ baseUrl: serverUrl(), apiKey: "rtd_nope_0000" }));
  const jobId = unique("job");
  for (const { chunkQueue } of [anonymous, forged]) {
    await assert.rejects(chunkQueue.createJob({ jobId, chunks: [{ payload: bytes(1) }] }), refusedWith(Code.Unauthenticated));
  }
  // Nothing was created.
  await assert.rejects(clientsAs("reader").chunkQueue.getJob({ jobId }), refusedWith(Code.NotFound));
});

test("the key's role decides what it may do", async () => {
  const jobId = unique("job");
  await assert.rejects(
    clientsAs("reader").chunkQueue.createJob({ jobId, chunks: [{ payload: bytes(1) }] }),
    refusedWith(Code.PermissionDenied),
  );
  const created = await clientsAs("admin").chunkQueue.createJob({ jobId, chunks: [{ payload: bytes(1) }] });
  assert.equal(created.jobId, jobId);
  const read = await clientsAs("reader").chunkQueue.getJob({ jobId });
  assert.equal(read.totalChunks, 1);
  const health = await clientsAs("reader").health.getSystemHealth({});
  assert.ok(health.database?.reachable, "the reader sees the system's health");
});

test("a key that cannot be sent as a header is refused before any call", () => {
  assert.throws(() => apiKeyInterceptor("two words"), TypeError);
  assert.throws(() => apiKeyInterceptor(""), TypeError);
  assert.throws(() => createNodeTransport({ baseUrl: serverUrl(), apiKey: "naïve" }), TypeError);
});
