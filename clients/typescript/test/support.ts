// What the tests need from the environment: the running server and its keys. The Rust test
// `cargo test --test clients` starts a real retryd, creates the keys and runs `npm test` with
// these set; without them the tests fail rather than pass vacuously.
import { randomBytes, randomUUID } from "node:crypto";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

import {
  createNodeTransport,
  createRetrydClients,
  type Outbox,
  type OutboxState,
  type RetrydClients,
} from "retryd-client/node";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the client tests with \`cargo test --test clients\``);
  }
  return value;
}

export const serverUrl = (): string => required("RETRYD_URL");

export type Role = "admin" | "worker" | "reader";

export const keyFor = (role: Role): string => required(`RETRYD_${role.toUpperCase()}_KEY`);

export function clientsAs(role: Role): RetrydClients {
  return createRetrydClients(createNodeTransport({ baseUrl: serverUrl(), apiKey: keyFor(role) }));
}

/** A name no other test uses, so tests sharing a server never see each other's work. */
export const unique = (prefix: string): string => `${prefix}-${randomUUID()}`;

export const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

/** A clock the test moves: callbacks run when `advance` passes their time. */
export class ManualTimer {
  private current = 1_700_000_000_000;
  private readonly pending: { at: number; callback: () => void; cancelled: boolean }[] = [];

  now = (): number => this.current;

  setTimeout = (callback: () => void, ms: number): (() => void) => {
    const entry = { at: this.current + ms, callback, cancelled: false };
    this.pending.push(entry);
    return () => {
      entry.cancelled = true;
    };
  };

  /** Moves the clock by `ms`, running every callback that falls due on the way. */
  advance(ms: number): void {
    const until = this.current + ms;
    for (;;) {
      const due = this.pending
        .filter((entry) => !entry.cancelled && entry.at <= until)
        .sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.pending.splice(this.pending.indexOf(due), 1);
      this.current = Math.max(this.current, due.at);
      due.callback();
    }
    this.current = until;
  }

  /** Resolves once something asks to run at `at` (work that reschedules after an awaited call). */
  async scheduledAt(at: number): Promise<void> {
    while (!this.pending.some((entry) => !entry.cancelled && entry.at === at)) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/**
 * A TCP link to the server that a test can cut and restore, like a network going away: while
 * cut, its port refuses connections and open connections are dropped.
 */
export class Link {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly target: { host: string; port: number },
    private port = 0,
  ) {}

  static async open(): Promise<Link> {
    const target = new URL(serverUrl());
    const link = new Link({ host: target.hostname, port: Number(target.port) });
    await link.restore();
    return link;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async restore(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on("close", () => this.sockets.delete(socket));
        socket.on("error", () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Resolves with the first state of `outbox` that `wanted` accepts. */
export function until(outbox: Outbox, wanted: (state: OutboxState) => boolean): Promise<OutboxState> {
  return new Promise((resolve) => {
    const stop = outbox.subscribe((state) => {
      if (!wanted(state)) return;
      queueMicrotask(() => stop());
      resolve(state);
    });
  });
}

/** A stored upload's content, downloaded. */
export async function download(clients: RetrydClients, uploadId: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of clients.uploadRetry.downloadUpload({ uploadId })) parts.push(part.data);
  return new Uint8Array(Buffer.concat(parts));
}

/** `size` bytes that differ from run to run. */
export const randomContent = (size: number): Uint8Array<ArrayBuffer> => new Uint8Array(randomBytes(size));
