// What the tests need from the environment: the running server and its keys. The Rust test
// `cargo test --test clients` starts a real retryd, creates the keys and runs `npm test` with
// these set; without them the tests fail rather than pass vacuously.
import { randomUUID } from "node:crypto";

import { createNodeTransport, createRetrydClients, type RetrydClients } from "retryd-client/node";

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
