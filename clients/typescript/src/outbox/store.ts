// What the outbox keeps until the server has confirmed it, and where: an OutboxStore. Three
// implementations: DexieOutboxStore (IndexedDB, browsers), JsonFileOutboxStore (a file, Node)
// and MemoryOutboxStore (for a process that may lose its queue when it exits).

/** An upload's declaration (everything but its bytes). */
export interface UploadDeclaration {
  uploadId: string;
  fileName: string;
  owner: string;
  contentType: string;
  destination: string;
}

export type OperationPayload =
  /** A file: its declaration and its bytes. */
  | { kind: "upload"; upload: UploadDeclaration; content: Uint8Array }
  /** A PushChangesRequest in protobuf binary (its change ids make a repeat a no-op). */
  | { kind: "syncPush"; request: Uint8Array };

export interface OutboxOperation {
  /** The idempotency key: the upload_id, or the sync push's id. */
  id: string;
  payload: OperationPayload;
  /** Failed attempts so far. */
  attempts: number;
  /** Epoch milliseconds before which the operation is not tried again (backoff). */
  nextAttemptAt: number;
  /** Epoch milliseconds; operations are sent in this order. */
  enqueuedAt: number;
  lastError?: string;
}

export interface OutboxStore {
  /** Every operation, oldest first. */
  all(): Promise<OutboxOperation[]>;
  /** Adds or replaces the operation with this id. */
  put(operation: OutboxOperation): Promise<void>;
  delete(id: string): Promise<void>;
}

export const byEnqueueTime = (a: OutboxOperation, b: OutboxOperation): number => a.enqueuedAt - b.enqueuedAt;

export class MemoryOutboxStore implements OutboxStore {
  private readonly operations = new Map<string, OutboxOperation>();

  async all(): Promise<OutboxOperation[]> {
    return [...this.operations.values()].map((operation) => structuredClone(operation)).sort(byEnqueueTime);
  }

  async put(operation: OutboxOperation): Promise<void> {
    this.operations.set(operation.id, structuredClone(operation));
  }

  async delete(id: string): Promise<void> {
    this.operations.delete(id);
  }
}
