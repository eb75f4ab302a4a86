// The offline outbox: uploads (with their bytes) and sync pushes are kept in a store until the
// server has confirmed them, and sent when the connection is there: at once when enqueued
// online, again with exponential backoff and jitter after a failure, and by itself when the
// connection comes back. Every operation carries its idempotency key (the upload_id, the change
// ids), so sending one twice (a reply lost on the way back) changes nothing on the server.
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";

import {
  PushChangesRequestSchema,
  SyncRetry,
  type PushChangesResponse,
} from "../gen/retryd/v1/sync_retry_pb.js";
import { UploadRetry, type Upload } from "../gen/retryd/v1/upload_retry_pb.js";
import { contentBytes, uploadFile, type UploadFile } from "../uploads.js";
import { isConnectionFailure, type Connectivity } from "./connectivity.js";
import type { OutboxOperation, OutboxStore } from "./store.js";
import { systemTimer, type Timer } from "./timer.js";

export interface OutboxState {
  /** Whether the server is thought reachable. */
  online: boolean;
  /** A flush is running. */
  syncing: boolean;
  /** Operations not yet confirmed by the server. */
  pendingCount: number;
  /** The last failure's message; cleared by a flush that sends everything. */
  lastError: string | undefined;
}

export interface Backoff {
  /** Delay after the first failure; default 1000 ms. */
  baseMs: number;
  /** Growth per failure; default 2. */
  multiplier: number;
  /** Cap; default 5 minutes. */
  maxMs: number;
  /** Fraction of the delay drawn at random (0.2: ±20 %), so clients do not retry in step. */
  jitter: number;
}

export interface OutboxOptions {
  transport: Transport;
  store: OutboxStore;
  /** Where online/offline comes from: `browserConnectivity()` or `healthProbe(transport)`. */
  connectivity: Connectivity;
  timer?: Timer;
  backoff?: Partial<Backoff>;
  /** Draws the jitter; default Math.random. */
  random?: () => number;
  /** Bytes per UploadContent part. */
  partSize?: number;
  /** Told how the server settled each operation as it leaves the outbox. */
  onSent?: (sent: Sent) => void;
}

export type Sent =
  | { kind: "upload"; id: string; upload: Upload }
  | { kind: "syncPush"; id: string; response: PushChangesResponse };

export type Enqueue =
  | { kind: "upload"; file: UploadFile }
  /** `id` defaults to the request's collection, client and change ids. */
  | { kind: "syncPush"; request: MessageInitShape<typeof PushChangesRequestSchema>; id?: string };

const defaultBackoff: Backoff = { baseMs: 1000, multiplier: 2, maxMs: 300_000, jitter: 0.2 };

/** The delay before attempt `attempts + 1`, after `attempts` failures (1 or more). */
export function backoffDelay(backoff: Backoff, attempts: number, random: () => number): number {
  const delay = Math.min(backoff.maxMs, backoff.baseMs * backoff.multiplier ** (attempts - 1));
  return Math.round(delay * (1 + backoff.jitter * (2 * random() - 1)));
}

/** At most this many ids per FlushPending call (the server's limit). */
const flushBatch = 1000;

export class Outbox {
  private readonly timer: Timer;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly listeners = new Set<(state: OutboxState) => void>();
  private readonly stopWatching: () => void;
  private state: OutboxState;
  private running: Promise<void> | undefined;
  private again = false;
  private cancelRetry: (() => void) | undefined;
  private readonly ready: Promise<void>;

  constructor(private readonly options: OutboxOptions) {
    this.timer = options.timer ?? systemTimer;
    this.backoff = { ...defaultBackoff, ...options.backoff };
    this.random = options.random ?? Math.random;
    this.state = { online: options.connectivity.online(), syncing: false, pendingCount: 0, lastError: undefined };
    this.stopWatching = options.connectivity.watch((online) => {
      this.update({ online });
      // Back online: whatever waits is sent now, backoff or not.
      if (online) this.flushInBackground({ ignoreBackoff: true });
    });
    // Count what a previous run (or page) left, then send it.
    this.ready = this.countPending();
    this.flushInBackground({ ignoreBackoff: true });
  }

  /** The state now, then every change, until the returned function is called. */
  subscribe(listener: (state: OutboxState) => void): () => void {
    this.listeners.add(listener);
    listener({ ...this.state });
    return () => this.listeners.delete(listener);
  }

  getState(): OutboxState {
    return { ...this.state };
  }

  /** Keeps the operation (replacing one with the same id), then tries to send it. */
  async enqueue(item: Enqueue): Promise<string> {
    await this.ready;
    const operation = await toOperation(item, this.timer.now());
    await this.options.store.put(operation);
    await this.countPending();
    this.flushInBackground();
    return operation.id;
  }

  /**
   * Sends what is due (everything with `ignoreBackoff`) while online. Resolves when done; a flush
   * asked for while one runs makes that one go round once more.
   */
  flush(options: { ignoreBackoff?: boolean } = {}): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        let ignoreBackoff = options.ignoreBackoff ?? false;
        do {
          this.again = false;
          await this.flushOnce(ignoreBackoff);
          ignoreBackoff = false;
        } while (this.again && this.state.online);
      } finally {
        this.running = undefined;
        this.update({ syncing: false });
      }
    })();
    return this.running;
  }

  /** A flush nobody awaits: a failure that is not a call's (the store's) shows as lastError. */
  private flushInBackground(options: { ignoreBackoff?: boolean } = {}): void {
    this.flush(options).catch((error: unknown) =>
      this.update({ lastError: error instanceof Error ? error.message : String(error) }),
    );
  }

  /** Stops watching the connection and cancels the retry timer; the store keeps what is left. */
  close(): void {
    this.stopWatching();
    this.cancelRetry?.();
    this.listeners.clear();
  }

  private async flushOnce(ignoreBackoff: boolean): Promise<void> {
    await this.ready;
    if (!this.options.connectivity.online()) {
      this.update({ online: false });
      return;
    }
    this.update({ syncing: true });
    const now = this.timer.now();
    const due = (await this.options.store.all()).filter((operation) => ignoreBackoff || operation.nextAttemptAt <= now);
    const stored: { operation: OutboxOperation; upload: Upload }[] = [];
    let reached = false;
    for (const operation of due) {
      try {
        if (operation.payload.kind === "upload") {
          const upload = await uploadFile(
            this.options.transport,
            { ...operation.payload.upload, content: operation.payload.content },
            { partSize: this.options.partSize },
          );
          stored.push({ operation, upload });
          reached = true;
        } else {
          const request = fromBinary(PushChangesRequestSchema, operation.payload.request);
          const response = await createClient(SyncRetry, this.options.transport).pushChanges(request);
          // The server settled every change (applied, conflict or rejected): a repeat would
          // return the same results, so the push is done.
          reached = true;
          await this.confirmed(operation.id);
          this.options.onSent?.({ kind: "syncPush", id: operation.id, response });
        }
      } catch (error) {
        if (await this.attemptFailed(operation, error)) break;
      }
    }
    // Stored uploads are delivered now rather than at the server's next sweep; they leave the
    // outbox once the server took the flush (until then a retry finds them stored and only
    // flushes again).
    for (let start = 0; start < stored.length; start += flushBatch) {
      const batch = stored.slice(start, start + flushBatch);
      try {
        await createClient(UploadRetry, this.options.transport).flushPending({
          uploadIds: batch.map(({ operation }) => operation.id),
        });
        for (const { operation, upload } of batch) {
          await this.confirmed(operation.id);
          this.options.onSent?.({ kind: "upload", id: operation.id, upload });
        }
      } catch (error) {
        for (const { operation } of batch) await this.attemptFailed(operation, error);
      }
    }
    const pendingCount = (await this.options.store.all()).length;
    this.update({
      syncing: false,
      pendingCount,
      // Everything is confirmed: no error stands any more.
      ...(pendingCount === 0 ? { lastError: undefined } : {}),
      ...(reached ? { online: true } : {}),
    });
    await this.scheduleRetry();
  }

  private async confirmed(id: string): Promise<void> {
    await this.options.store.delete(id);
  }

  /** Records the failure and its backoff; true when the connection is gone (stop this flush). */
  private async attemptFailed(operation: OutboxOperation, error: unknown): Promise<boolean> {
    const message = ConnectError.from(error).message;
    const attempts = operation.attempts + 1;
    await this.options.store.put({
      ...operation,
      attempts,
      lastError: message,
      nextAttemptAt: this.timer.now() + backoffDelay(this.backoff, attempts, this.random),
    });
    this.update({ lastError: message });
    if (!isConnectionFailure(error)) return false;
    this.update({ online: false });
    this.options.connectivity.lost();
    return true;
  }

  /** Wakes up when the next operation is due. */
  private async scheduleRetry(): Promise<void> {
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    const pending = await this.options.store.all();
    if (pending.length === 0) return;
    const next = Math.min(...pending.map((operation) => operation.nextAttemptAt));
    this.cancelRetry = this.timer.setTimeout(() => this.flushInBackground(), Math.max(0, next - this.timer.now()));
  }

  private async countPending(): Promise<void> {
    this.update({ pendingCount: (await this.options.store.all()).length });
  }

  private update(change: Partial<OutboxState>): void {
    const next = { ...this.state, ...change };
    const same = (Object.keys(next) as (keyof OutboxState)[]).every((key) => next[key] === this.state[key]);
    if (same) return;
    this.state = next;
    for (const listener of this.listeners) listener({ ...next });
  }
}

async function toOperation(item: Enqueue, now: number): Promise<OutboxOperation> {
  const base = { attempts: 0, nextAttemptAt: now, enqueuedAt: now };
  if (item.kind === "upload") {
    const { content, ...declaration } = item.file;
    return {
      ...base,
      id: declaration.uploadId,
      payload: {
        kind: "upload",
        upload: {
          uploadId: declaration.uploadId,
          fileName: declaration.fileName,
          owner: declaration.owner,
          contentType: declaration.contentType ?? "",
          destination: declaration.destination ?? "",
        },
        content: await contentBytes(content),
      },
    };
  }
  const request = create(PushChangesRequestSchema, item.request);
  const id = item.id ?? `${request.collection}/${request.clientId}/${request.changes.map((change) => change.changeId).join(",")}`;
  return { ...base, id, payload: { kind: "syncPush", request: toBinary(PushChangesRequestSchema, request) } };
}
