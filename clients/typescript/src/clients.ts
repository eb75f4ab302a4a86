// One typed client per retryd service, over any transport (Node gRPC or browser gRPC-Web).
import { createClient, type Client, type Transport } from "@connectrpc/connect";

import { ChunkQueue } from "./gen/retryd/v1/chunk_queue_pb.js";
import { Health } from "./gen/retryd/v1/health_pb.js";
import { Scheduler } from "./gen/retryd/v1/scheduler_pb.js";
import { SyncRetry } from "./gen/retryd/v1/sync_retry_pb.js";
import { UploadRetry } from "./gen/retryd/v1/upload_retry_pb.js";

export interface RetrydClients {
  chunkQueue: Client<typeof ChunkQueue>;
  health: Client<typeof Health>;
  scheduler: Client<typeof Scheduler>;
  uploadRetry: Client<typeof UploadRetry>;
  syncRetry: Client<typeof SyncRetry>;
}

export function createRetrydClients(transport: Transport): RetrydClients {
  return {
    chunkQueue: createClient(ChunkQueue, transport),
    health: createClient(Health, transport),
    scheduler: createClient(Scheduler, transport),
    uploadRetry: createClient(UploadRetry, transport),
    syncRetry: createClient(SyncRetry, transport),
  };
}
