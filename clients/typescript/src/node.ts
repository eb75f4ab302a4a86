// Node: gRPC over HTTP/2, which carries every kind of call, including the Work stream.
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { interceptorsFor, type RetrydTransportOptions } from "./transport.js";

export * from "./index.js";
export { JsonFileOutboxStore } from "./outbox/file-store.js";

export function createNodeTransport(options: RetrydTransportOptions): Transport {
  return createGrpcTransport({ baseUrl: options.baseUrl, interceptors: interceptorsFor(options) });
}
