// Run a function per chunk of a queue over a `Work` stream, like the Rust client's
// `worker::run_chunks`: the server pushes chunks while the worker has room (`concurrency`
// credits), each chunk's function runs concurrently, long-running chunks keep their lease with
// heartbeats, and every outcome is reported on the stream. Aborting `signal` stops cleanly: no
// new chunks are taken, the chunks in hand finish and are reported, then the stream is closed.
//
// The Work stream is bidirectional, so it needs the Node transport (gRPC over HTTP/2).
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";

import {
  ChunkQueue,
  WorkAckKind,
  WorkRequestSchema,
  type LeasedChunk,
  type WorkAck,
  type WorkRequest,
} from "./gen/retryd/v1/chunk_queue_pb.js";
import { MessageQueue } from "./message-queue.js";

/** What became of a chunk. */
export type Outcome =
  /** Done, with an optional result kept with the chunk. */
  | { kind: "complete"; result: Uint8Array }
  /** Failed; tried again after the job's backoff, until its attempts are used up. */
  | { kind: "retry"; error: string }
  /** Failed for good. */
  | { kind: "fail"; error: string };

export const complete = (result: Uint8Array = new Uint8Array()): Outcome => ({
  kind: "complete",
  result,
});
export const retry = (error: string): Outcome => ({ kind: "retry", error });
export const fail = (error: string): Outcome => ({ kind: "fail", error });

/**
 * Works one chunk. A thrown error counts as `retry(error.message)`: most exceptions are
 * transient, and the job's max_attempts bound the retries. `signal` is aborted when the Work
 * stream fails, after which the outcome can no longer be reported.
 */
export type ChunkHandler = (
  chunk: LeasedChunk,
  context: { signal: AbortSignal },
) => Outcome | Promise<Outcome>;

export interface WorkerOptions {
  /** Defaults to "default". */
  queue?: string;
  workerId: string;
  /** Chunks worked on at once; default 8. */
  concurrency?: number;
  /** Lease per chunk in seconds; default 60 (0: the server's default). */
  leaseSeconds?: number;
  /** While a chunk's function runs, its lease is extended this often; default 20 000 ms. */
  heartbeatMs?: number;
  /** Aborting stops the worker cleanly (see above). */
  signal?: AbortSignal;
  /** Told how the server settled each outcome and heartbeat (code 0: accepted). */
  onAck?: (ack: WorkAck) => void;
}

/**
 * Works chunks until `options.signal` is aborted (resolves once the chunks in hand are
 * reported and the stream is closed) or the stream fails (rejects with the ConnectError;
 * reconnecting is the caller's choice).
 */
export async function runChunks(
  transport: Transport,
  options: WorkerOptions,
  handler: ChunkHandler,
): Promise<void> {
  const concurrency = options.concurrency ?? 8;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError("concurrency must be a whole number of at least 1");
  }
  const leaseSeconds = options.leaseSeconds ?? 60;
  const heartbeatMs = Math.max(options.heartbeatMs ?? 20_000, 10);
  const requests = new MessageQueue<WorkRequest>();
  type Kind = MessageInitShape<typeof WorkRequestSchema>["kind"];
  const send = (kind: Kind) => requests.push(create(WorkRequestSchema, { kind }));
  const streamGone = new AbortController();
  const inHand = new Set<Promise<void>>();
  let stopping = false;

  const workOne = async (chunk: LeasedChunk): Promise<void> => {
    const { chunkId, leaseToken } = chunk;
    const heartbeats = setInterval(
      () => send({ case: "heartbeat", value: { chunkId, leaseToken, leaseSeconds } }),
      heartbeatMs,
    );
    let outcome: Outcome;
    try {
      outcome = await handler(chunk, { signal: streamGone.signal });
    } catch (error) {
      outcome = retry(error instanceof Error ? error.message : String(error));
    } finally {
      clearInterval(heartbeats);
    }
    switch (outcome.kind) {
      case "complete":
        send({ case: "complete", value: { chunkId, leaseToken, result: outcome.result } });
        break;
      case "retry":
      case "fail":
        send({
          case: "fail",
          value: { chunkId, leaseToken, errorMessage: outcome.error, retryable: outcome.kind === "retry" },
        });
        break;
    }
  };

  // Closing our side once the chunks in hand are reported ends the stream: the server settles
  // the outcomes sent, then finishes, and releases any chunk it pushed that we did not take.
  // (A handler may abort synchronously, before its own chunk is counted in hand: hence the loop.)
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      while (inHand.size > 0) await Promise.allSettled([...inHand]);
      requests.close();
    })();
  };

  send({
    case: "start",
    value: { queue: options.queue ?? "default", workerId: options.workerId, leaseSeconds, batch: false },
  });
  send({ case: "credit", value: { count: concurrency } });
  options.signal?.addEventListener("abort", stop, { once: true });
  if (options.signal?.aborted) stop();

  try {
    for await (const response of createClient(ChunkQueue, transport).work(requests)) {
      const message = response.kind;
      if (message.case === "chunk" && !stopping) {
        const working = workOne(message.value);
        inHand.add(working);
        void working.finally(() => inHand.delete(working));
      } else if (message.case === "ack") {
        options.onAck?.(message.value);
        // A settled (or refused) outcome makes room for another chunk; a heartbeat frees none.
        if (message.value.kind !== WorkAckKind.HEARTBEAT && !stopping) {
          send({ case: "credit", value: { count: 1 } });
        }
      }
    }
  } catch (error) {
    throw ConnectError.from(error);
  } finally {
    options.signal?.removeEventListener("abort", stop);
    streamGone.abort();
    requests.close();
  }
  if (!stopping) {
    throw new ConnectError("the server ended the Work stream", Code.Unavailable);
  }
}
