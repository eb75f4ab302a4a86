// The offline outbox against the real server, through a TCP link the test cuts and restores:
// operations queue while offline, back off while sending fails, flush by themselves when the
// link returns, survive a new Outbox over the same file ("a reload"), and reach the server
// exactly once each.
import assert from "node:assert/strict";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import {
  backoffDelay,
  ChangeStatus,
  createNodeTransport,
  healthProbe,
  JsonFileOutboxStore,
  MemoryOutboxStore,
  Outbox,
  sha256Hex,
  UploadStatus,
  type Enqueue,
  type OutboxStore,
  type Sent,
} from "retryd-client/node";

import { timestampNow } from "@bufbuild/protobuf/wkt";

import { clientsAs, download, keyFor, Link, ManualTimer, randomContent, unique, until } from "./support.js";

const backoff = { baseMs: 1000, multiplier: 2, maxMs: 60_000, jitter: 0.2 };

function outboxThrough(link: Link, store: OutboxStore, timer: ManualTimer, onSent?: (sent: Sent) => void): Outbox {
  const transport = createNodeTransport({ baseUrl: link.url, apiKey: keyFor("admin") });
  return new Outbox({
    transport,
    store,
    connectivity: healthProbe(transport, { intervalMs: 5000, timer }),
    timer,
    backoff,
    random: () => 1, // the top of the jitter range, so delays are exact
    partSize: 1000,
    onSent,
  });
}

/** Two uploads and a sync push of one change, all owned by / named after `tag`. */
function work(tag: string) {
  const files = [randomContent(2500), randomContent(10)];
  const items: Enqueue[] = [
    ...files.map((content, index): Enqueue => ({
      kind: "upload",
      file: { uploadId: `${tag}-file-${index}`, fileName: `f${index}.bin`, owner: tag, content },
    })),
    {
      kind: "syncPush",
      request: {
        collection: tag,
        clientId: "device-1",
        changes: [
          { changeId: `${tag}-change-1`, recordId: "note-1", updatedAt: timestampNow(), payload: new TextEncoder().encode("hello") },
        ],
      },
    },
  ];
  return { files, items };
}

/** The server holds each file once, stored with its sha256, and the change applied once. */
async function assertServerHoldsOneOfEach(tag: string, files: Uint8Array[]): Promise<void> {
  const clients = clientsAs("admin");
  const { uploads } = await clients.uploadRetry.listUploads({ owner: tag });
  assert.deepEqual(uploads.map((upload) => upload.uploadId).sort(), files.map((_, index) => `${tag}-file-${index}`));
  for (const [index, content] of files.entries()) {
    const upload = uploads.find((one) => one.uploadId === `${tag}-file-${index}`)!;
    assert.equal(upload.status, UploadStatus.STORED);
    assert.equal(upload.sha256, await sha256Hex(content));
    assert.deepEqual(await download(clients, upload.uploadId), content);
  }
  const { records } = await clients.syncRetry.pullChanges({ collection: tag });
  assert.deepEqual(
    records.map((record) => [record.recordId, record.version, new TextDecoder().decode(record.payload)]),
    [["note-1", 1n, "hello"]],
  );
}

test("offline: operations queue; when the link returns the probe sees it and they flush, once each", { timeout: 30_000 }, async () => {
  const link = await Link.open();
  const timer = new ManualTimer();
  await link.cut();
  const sent: Sent[] = [];
  const outbox = outboxThrough(link, new MemoryOutboxStore(), timer, (one) => sent.push(one));
  const tag = unique("ts-outbox");
  const { files, items } = work(tag);
  for (const item of items) await outbox.enqueue(item);
  let state = await until(outbox, (now) => !now.syncing && now.pendingCount === 3 && !now.online);
  assert.match(state.lastError ?? "", /.+/);

  // Still cut: the health probe fails, nothing is sent, and the next probe is due in 5 s.
  timer.advance(5000);
  await timer.scheduledAt(timer.now() + 5000);
  await outbox.flush();
  assert.equal(outbox.getState().online, false);
  assert.equal(sent.length, 0, "nothing reached the server");

  // The link returns: the next probe sees it, and the outbox flushes on its own.
  await link.restore();
  timer.advance(5000);
  state = await until(outbox, (now) => now.online && now.pendingCount === 0 && !now.syncing);
  assert.equal(state.lastError, undefined);
  assert.deepEqual(sent.map((one) => one.kind).sort(), ["syncPush", "upload", "upload"]);
  const push = sent.find((one) => one.kind === "syncPush");
  assert.equal(push?.kind === "syncPush" && push.response.results[0]?.status, ChangeStatus.APPLIED);
  await assertServerHoldsOneOfEach(tag, files);

  // The same operations again (as after a reply lost on the way back) change nothing.
  for (const item of items) await outbox.enqueue(item);
  await outbox.flush();
  assert.equal(outbox.getState().pendingCount, 0);
  await assertServerHoldsOneOfEach(tag, files);
  outbox.close();
  await link.cut();
});

test("an operation the server refuses stays, retried with exponential backoff, and blocks nothing", { timeout: 30_000 }, async () => {
  const link = await Link.open();
  const timer = new ManualTimer();
  const store = new MemoryOutboxStore();
  const outbox = outboxThrough(link, store, timer);
  const tag = unique("ts-backoff");
  const { files, items } = work(tag);
  for (const item of items) await outbox.enqueue(item);
  await outbox.flush();
  await assertServerHoldsOneOfEach(tag, files);

  // The same upload id with other content: ALREADY_EXISTS on every try.
  await outbox.enqueue({
    kind: "upload",
    file: { uploadId: `${tag}-file-0`, fileName: "other.bin", owner: tag, content: randomContent(3) },
  });
  await outbox.flush();
  for (const attempts of [1, 2, 3]) {
    const [refused] = await store.all();
    const delay = backoffDelay(backoff, attempts, () => 1);
    assert.equal(delay, 1200 * 2 ** (attempts - 1), "base × 2^(attempts − 1), at the top of the jitter");
    assert.deepEqual([refused!.attempts, refused!.nextAttemptAt - timer.now()], [attempts, delay]);
    assert.match(refused!.lastError ?? "", /already/i);
    assert.deepEqual(outbox.getState(), { online: true, syncing: false, pendingCount: 1, lastError: refused!.lastError });
    timer.advance(delay - 1);
    await outbox.flush();
    assert.equal((await store.all())[0]!.attempts, attempts, "not tried before its time");
    timer.advance(1);
    await outbox.flush();
  }
  await assertServerHoldsOneOfEach(tag, files);
  outbox.close();
  await link.cut();
});

test("a file outbox survives a new Outbox (a restart) and flushes on start", { timeout: 30_000 }, async () => {
  const link = await Link.open();
  await link.cut();
  const timer = new ManualTimer();
  const path = join(await mkdtemp(join(tmpdir(), "retryd-outbox-")), "outbox.json");
  const tag = unique("ts-file-outbox");
  const { files, items } = work(tag);

  const before = outboxThrough(link, new JsonFileOutboxStore(path), timer);
  for (const item of items) await before.enqueue(item);
  await until(before, (now) => !now.syncing && now.pendingCount === 3);
  before.close();
  assert.equal(JSON.parse(await readFile(path, "utf8")).length, 3);

  // A change id already applied before (its reply lost): the outbox's push is a no-op.
  const direct = items[2]!;
  assert.equal(direct.kind, "syncPush");
  if (direct.kind === "syncPush") await clientsAs("admin").syncRetry.pushChanges(direct.request);

  await link.restore();
  const after = outboxThrough(link, new JsonFileOutboxStore(path), timer);
  await until(after, (now) => now.pendingCount === 3);
  await until(after, (now) => now.online && now.pendingCount === 0 && !now.syncing);
  assert.deepEqual(JSON.parse(await readFile(path, "utf8")), []);
  await assertServerHoldsOneOfEach(tag, files);
  after.close();
  await link.cut();
});
