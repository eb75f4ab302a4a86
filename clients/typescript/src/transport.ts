// What the Node and the browser transports have in common: where the server is and how calls
// are authorized. The transport factories themselves live in node.ts and web.ts so a browser
// bundle never pulls in Node's http2 module.
import type { Interceptor } from "@connectrpc/connect";

import { apiKeyInterceptor } from "./auth.js";

export interface RetrydTransportOptions {
  /** The server, e.g. "http://127.0.0.1:50051". */
  baseUrl: string;
  /** Sent as `authorization: Bearer <key>` on every call. */
  apiKey?: string;
  /** More interceptors, run after the API key's. */
  interceptors?: Interceptor[];
}

export function interceptorsFor(options: RetrydTransportOptions): Interceptor[] {
  const withKey = options.apiKey === undefined ? [] : [apiKeyInterceptor(options.apiKey)];
  return [...withKey, ...(options.interceptors ?? [])];
}

// Transports whose client-streaming calls carry one message each (gRPC-Web): helpers that
// stream (uploadFile) send one message per call over them.
const oneMessageClientStreams = new WeakSet<object>();

export function markOneMessageClientStreams(transport: object): void {
  oneMessageClientStreams.add(transport);
}

export function clientStreamsCarryOneMessage(transport: object): boolean {
  return oneMessageClientStreams.has(transport);
}
