// Browsers: gRPC-Web over fetch (retryd serves it, with CORS, on its gRPC port). gRPC-Web
// carries unary and server-streaming calls (WatchJob, WatchSystemHealth), not the
// bidirectional Work stream: workers run under Node.
import type { Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { interceptorsFor, type RetrydTransportOptions } from "./transport.js";

export * from "./index.js";

export function createWebTransport(options: RetrydTransportOptions): Transport {
  return createGrpcWebTransport({ baseUrl: options.baseUrl, interceptors: interceptorsFor(options) });
}
