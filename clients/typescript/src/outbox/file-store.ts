// The outbox in a JSON file (Node), so queued operations survive a restart. Every change
// rewrites the file through a temporary file and a rename, so a crash leaves the old or the new
// queue, never half of one. Bytes are kept as base64.
import { readFile, rename, writeFile } from "node:fs/promises";

import { byEnqueueTime, type OutboxOperation, type OutboxStore, type UploadDeclaration } from "./store.js";

/** A payload with its bytes as `Bytes` (Uint8Array in memory, base64 in the file). */
type PayloadOf<Bytes> =
  | { kind: "upload"; upload: UploadDeclaration; content: Bytes }
  | { kind: "syncPush"; request: Bytes };

type Stored = Omit<OutboxOperation, "payload"> & { payload: PayloadOf<string> };

function convertBytes<From, To>(payload: PayloadOf<From>, convert: (bytes: From) => To): PayloadOf<To> {
  return payload.kind === "upload"
    ? { ...payload, content: convert(payload.content) }
    : { ...payload, request: convert(payload.request) };
}

const toStored = (operation: OutboxOperation): Stored => ({
  ...operation,
  payload: convertBytes(operation.payload, (bytes) => Buffer.from(bytes).toString("base64")),
});

const fromStored = (stored: Stored): OutboxOperation => ({
  ...stored,
  payload: convertBytes(stored.payload, (text) => new Uint8Array(Buffer.from(text, "base64"))),
});

export class JsonFileOutboxStore implements OutboxStore {
  // Changes run one after another so two writes never interleave.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly path: string) {}

  all(): Promise<OutboxOperation[]> {
    return this.serialized(async () => (await this.read()).map(fromStored).sort(byEnqueueTime));
  }

  put(operation: OutboxOperation): Promise<void> {
    return this.serialized(async () => {
      const stored = (await this.read()).filter((other) => other.id !== operation.id);
      await this.write([...stored, toStored(operation)]);
    });
  }

  delete(id: string): Promise<void> {
    return this.serialized(async () => this.write((await this.read()).filter((other) => other.id !== id)));
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async read(): Promise<Stored[]> {
    try {
      return JSON.parse(await readFile(this.path, "utf8")) as Stored[];
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
  }

  private async write(operations: Stored[]): Promise<void> {
    const temporary = `${this.path}.tmp`;
    await writeFile(temporary, JSON.stringify(operations));
    await rename(temporary, this.path);
  }
}
