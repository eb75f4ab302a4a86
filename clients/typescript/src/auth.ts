// API keys: every call through a transport built with `apiKey` carries
// `authorization: Bearer <key>`, which is how retryd authenticates callers.
import type { Interceptor } from "@connectrpc/connect";

/** An interceptor that adds the key to every call (unary and streaming). */
export function apiKeyInterceptor(key: string): Interceptor {
  // Fail at construction, not on the first call: a header value must be printable ASCII.
  if (!/^[\x21-\x7e]+$/.test(key)) {
    throw new TypeError("an API key must be non-empty printable ASCII without spaces");
  }
  const value = `Bearer ${key}`;
  return (next) => async (request) => {
    request.header.set("authorization", value);
    return await next(request);
  };
}
