// The outbox in IndexedDB (browsers), through Dexie: queued operations, file bytes included,
// survive a page reload or a closed tab. Uint8Arrays are stored as they are (structured clone).
import { Dexie, type EntityTable } from "dexie";

import type { OutboxOperation, OutboxStore } from "./store.js";

export class DexieOutboxStore implements OutboxStore {
  private readonly db: Dexie & { operations: EntityTable<OutboxOperation, "id"> };

  /** `name`: the IndexedDB database, one per outbox. */
  constructor(name = "retryd-outbox") {
    this.db = new Dexie(name) as Dexie & { operations: EntityTable<OutboxOperation, "id"> };
    this.db.version(1).stores({ operations: "id, enqueuedAt" });
  }

  all(): Promise<OutboxOperation[]> {
    return this.db.operations.orderBy("enqueuedAt").toArray();
  }

  async put(operation: OutboxOperation): Promise<void> {
    await this.db.operations.put(operation);
  }

  delete(id: string): Promise<void> {
    return this.db.operations.delete(id);
  }
}
