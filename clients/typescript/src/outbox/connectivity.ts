// Whether the server can be reached. The outbox also learns it from its own calls: a call that
// fails for lack of a connection means offline (`lost`), and a connectivity tells the outbox
// when the link is back so it flushes by itself.
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";

import { Health } from "../gen/retryd/v1/health_pb.js";
import { systemTimer, type Timer } from "./timer.js";

export interface Connectivity {
  /** The current guess. */
  online(): boolean;
  /** Calls `changed` when the link comes or goes; returns a function that stops watching. */
  watch(changed: (online: boolean) => void): () => void;
  /** A call failed for lack of a connection: watch for its return. */
  lost(): void;
}

/** Browsers: `navigator.onLine` and the window's `online` / `offline` events. */
export function browserConnectivity(): Connectivity {
  return {
    online: () => navigator.onLine,
    watch(changed) {
      const up = () => changed(true);
      const down = () => changed(false);
      globalThis.addEventListener("online", up);
      globalThis.addEventListener("offline", down);
      return () => {
        globalThis.removeEventListener("online", up);
        globalThis.removeEventListener("offline", down);
      };
    },
    lost() {
      // The browser's events say when the network returns; the outbox's backoff retries meanwhile
      // (the network may be up while the server is not).
    },
  };
}

export interface ProbeOptions {
  /** How often to probe while offline; default 5000 ms. */
  intervalMs?: number;
  timer?: Timer;
}

/**
 * Node: after a lost connection, probes the server with Health.GetSystemHealth every
 * `intervalMs` until one answers (any answer, even an error status, means the server is
 * reachable).
 */
export function healthProbe(transport: Transport, options: ProbeOptions = {}): Connectivity {
  const health = createClient(Health, transport);
  const timer = options.timer ?? systemTimer;
  const intervalMs = options.intervalMs ?? 5000;
  const listeners = new Set<(online: boolean) => void>();
  let online = true;
  let probing = false;
  let cancelProbe: (() => void) | undefined;

  const set = (value: boolean) => {
    if (online === value) return;
    online = value;
    for (const listener of listeners) listener(value);
  };
  const probe = async (): Promise<void> => {
    const reached = await health.getSystemHealth({}).then(
      () => true,
      (error: unknown) => !isConnectionFailure(error),
    );
    if (!probing) return; // stopped meanwhile
    if (reached) {
      probing = false;
      set(true);
    } else {
      cancelProbe = timer.setTimeout(() => void probe(), intervalMs);
    }
  };

  return {
    online: () => online,
    watch(changed) {
      listeners.add(changed);
      return () => {
        listeners.delete(changed);
        // Nobody listens any more: stop probing (a pending probe would keep Node running).
        if (listeners.size === 0) {
          probing = false;
          cancelProbe?.();
        }
      };
    },
    lost() {
      set(false);
      if (probing) return;
      probing = true;
      cancelProbe = timer.setTimeout(() => void probe(), intervalMs);
    },
  };
}


/** Errors that say nothing reached the server (as opposed to a status it answered). */
export function isConnectionFailure(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return code === Code.Unavailable || code === Code.Unknown || code === Code.DeadlineExceeded;
}
