// retryd's TypeScript client: messages and service descriptors generated from proto/ by
// protoc-gen-es, typed clients, API keys, and the worker helper. Pick a transport from
// "retryd-client/node" (gRPC over HTTP/2) or "retryd-client/web" (gRPC-Web, for browsers).
export * from "./gen/retryd/v1/chunk_queue_pb.js";
export * from "./gen/retryd/v1/health_pb.js";
export * from "./gen/retryd/v1/scheduler_pb.js";
export { apiKeyInterceptor } from "./auth.js";
export { createRetrydClients, type RetrydClients } from "./clients.js";
export { type RetrydTransportOptions } from "./transport.js";
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
