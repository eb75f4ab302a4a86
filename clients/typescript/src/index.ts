// retryd's TypeScript client: messages and service descriptors generated from proto/ by
// protoc-gen-es, typed clients, API keys, and the worker helper. Pick a transport from
// "retryd-client/node" (gRPC over HTTP/2) or "retryd-client/web" (gRPC-Web, for browsers).
export * from "./gen/retryd/v1/chunk_queue_pb.js";
export * from "./gen/retryd/v1/health_pb.js";
export * from "./gen/retryd/v1/scheduler_pb.js";
export * from "./gen/retryd/v1/sync_retry_pb.js";
export * from "./gen/retryd/v1/upload_retry_pb.js";
export { apiKeyInterceptor } from "./auth.js";
export { createRetrydClients, type RetrydClients } from "./clients.js";
export { type RetrydTransportOptions } from "./transport.js";
export { uploadFile, sha256Hex, type UploadFile, type UploadOptions } from "./uploads.js";
export {
  runChunks,
  complete,
  retry,
  fail,
  type Outcome,
  type ChunkHandler,
  type WorkerOptions,
} from "./worker.js";
export { create, toBinary, fromBinary } from "@bufbuild/protobuf";
export { timestampDate } from "@bufbuild/protobuf/wkt";
export { Code, ConnectError, type Transport } from "@connectrpc/connect";
export {
  Outbox,
  backoffDelay,
  type OutboxOptions,
  type OutboxState,
  type Backoff,
  type Enqueue,
  type Sent,
} from "./outbox/outbox.js";
export {
  MemoryOutboxStore,
  type OutboxStore,
  type OutboxOperation,
  type OperationPayload,
  type UploadDeclaration,
} from "./outbox/store.js";
export { browserConnectivity, healthProbe, isConnectionFailure, type Connectivity, type ProbeOptions } from "./outbox/connectivity.js";
export { systemTimer, type Timer } from "./outbox/timer.js";
