// Browsers: gRPC-Web over fetch (retryd serves it, with CORS, on its gRPC port). gRPC-Web
// carries unary and server-streaming calls (WatchJob, WatchSystemHealth), not the
// bidirectional Work stream: workers run under Node.
//
// Client streams (UploadContent): fetch cannot stream a request body, and connect-web refuses
// every client-streaming call for that reason. A client stream of exactly one message needs no
// streaming body, though: it is sent as a unary gRPC-Web call to the same method, which the server
// reads as a stream of one message. `uploadFile` sends one part per call over this transport.
import type { DescMethod, DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { interceptorsFor, markOneMessageClientStreams, type RetrydTransportOptions } from "./transport.js";

export * from "./index.js";
export { DexieOutboxStore } from "./outbox/dexie-store.js";

export function createWebTransport(options: RetrydTransportOptions): Transport {
  const grpcWeb = createGrpcWebTransport({ baseUrl: options.baseUrl, interceptors: interceptorsFor(options) });
  const transport: Transport = {
    unary: grpcWeb.unary.bind(grpcWeb),
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      if (method.methodKind !== "client_streaming") {
        return await grpcWeb.stream(method, signal, timeoutMs, header, input, contextValues);
      }
      const message = await onlyMessage(input);
      const asUnary = { ...method, methodKind: "unary" } as unknown as DescMethodUnary;
      const response = await grpcWeb.unary(asUnary, signal, timeoutMs, header, message, contextValues);
      return {
        stream: true,
        service: method.parent,
        method,
        header: response.header,
        trailer: response.trailer,
        message: (async function* () {
          yield response.message;
        })(),
      } as StreamResponse<DescMethod["input"], DescMethod["output"]> as never;
    },
  };
  markOneMessageClientStreams(transport);
  return transport;
}

async function onlyMessage<T>(input: AsyncIterable<T>): Promise<T> {
  const messages: T[] = [];
  for await (const message of input) {
    messages.push(message);
    if (messages.length > 1) {
      throw new ConnectError("gRPC-Web carries one message per client-streaming call", Code.Unimplemented);
    }
  }
  if (messages.length === 0) {
    throw new ConnectError("a client-streaming call needs a message", Code.InvalidArgument);
  }
  return messages[0]!;
}
