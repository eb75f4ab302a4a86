// The upload helper against the real server: an upload cut mid-way resumes from the server's
// received_bytes and completes with the right content; over gRPC-Web it sends a part per call.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createNodeTransport, sha256Hex, uploadFile, UploadStatus } from "retryd-client/node";
import { createWebTransport } from "retryd-client/web";
import { create } from "@bufbuild/protobuf";
import { UploadContentRequestSchema, type UploadContentRequest } from "retryd-client";

import { clientsAs, download, keyFor, randomContent, serverUrl, unique } from "./support.js";

const partSize = 64 * 1024;

test("an upload cut mid-way resumes from received_bytes and completes", { timeout: 30_000 }, async () => {
  const transport = createNodeTransport({ baseUrl: serverUrl(), apiKey: keyFor("admin") });
  const clients = clientsAs("admin");
  const content = randomContent(4 * partSize + 1234);
  const uploadId = unique("cut");
  await clients.uploadRetry.createUpload({
    uploadId,
    owner: "ts-tests",
    fileName: "cut.bin",
    sizeBytes: BigInt(content.length),
    sha256: await sha256Hex(content),
  });

  // Send two parts, then cut the call while it is still open (no end of stream).
  const cut = new AbortController();
  async function* twoPartsThenCut(): AsyncGenerator<UploadContentRequest> {
    for (const offset of [0, partSize]) {
      yield create(UploadContentRequestSchema, { uploadId, offset: BigInt(offset), data: content.subarray(offset, offset + partSize) });
    }
    // Asked for a third part: the two are on the wire. Wait for the server to take them, then cut.
    await new Promise((resolve) => setTimeout(resolve, 200));
    cut.abort();
    await new Promise(() => undefined);
  }
  await assert.rejects(clients.uploadRetry.uploadContent(twoPartsThenCut(), { signal: cut.signal }));

  // The cut call's checkpoint lands when the server sees the cut.
  let received = 0n;
  for (let tries = 0; tries < 100 && received === 0n; tries++) {
    received = (await clients.uploadRetry.getUpload({ uploadId })).receivedBytes;
    if (received === 0n) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(received, BigInt(2 * partSize), "the server kept the two parts of the cut call");

  const sent: bigint[] = [];
  const upload = await uploadFile(
    transport,
    { uploadId, owner: "ts-tests", fileName: "cut.bin", content },
    { partSize, onPart: (offset) => sent.push(offset) },
  );
  assert.equal(sent[0], received, "the upload resumed where the server had it");
  assert.deepEqual(sent, [2, 3, 4].map((part) => BigInt(part * partSize)));
  assert.equal(upload.status, UploadStatus.STORED);
  assert.equal(upload.receivedBytes, BigInt(content.length));
  assert.equal(upload.sha256, await sha256Hex(content));
  assert.deepEqual(await download(clients, uploadId), content);

  // Again: the upload is stored, so nothing is sent and it is returned as it is.
  const again = await uploadFile(transport, { uploadId, owner: "ts-tests", fileName: "cut.bin", content }, { onPart: () => assert.fail("sent a part") });
  assert.equal(again.status, UploadStatus.STORED);
});

test("over gRPC-Web an upload goes one part per call", { timeout: 30_000 }, async () => {
  const transport = createWebTransport({ baseUrl: serverUrl(), apiKey: keyFor("admin") });
  const content = new Blob([randomContent(2 * partSize + 7)]);
  const bytes = new Uint8Array(await content.arrayBuffer());
  const uploadId = unique("web");
  const upload = await uploadFile(transport, { uploadId, fileName: "web.bin", content, owner: "web-owner" }, { partSize });
  assert.equal(upload.status, UploadStatus.STORED);
  assert.equal(upload.sha256, await sha256Hex(bytes));
  assert.deepEqual(await download(clientsAs("admin"), uploadId), bytes);
});

test("an empty file uploads with one empty part", async () => {
  const transport = createNodeTransport({ baseUrl: serverUrl(), apiKey: keyFor("admin") });
  const upload = await uploadFile(transport, { uploadId: unique("empty"), owner: "ts-tests", fileName: "empty.bin", content: new Uint8Array() });
  assert.deepEqual([upload.status, upload.sizeBytes], [UploadStatus.STORED, 0n]);
});
